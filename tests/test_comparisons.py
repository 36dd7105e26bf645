"""The paper's claims tested on table rows: Welch standard errors and verdicts, in the table files and at start-up."""
import math

import numpy as np
import pytest
import yaml

from imagenet_t2i.config import ConfigError, validate_config
from imagenet_t2i.io import read_json, write_json
from imagenet_t2i.paper.comparisons import CANNOT_TELL, OPPOSITE, REPRODUCED, verdict, welch_se
from imagenet_t2i.paper.reference import load_reference
from imagenet_t2i.paper.tables import build_table

from .conftest import REPO


def test_welch_standard_error_and_the_three_verdicts():
    a, b = [0.20, 0.25, 0.30], [0.50, 0.55, 0.65]
    se = math.sqrt(np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 3)
    assert welch_se(a, b) == pytest.approx(se)
    assert verdict(a, b, "higher") == (REPRODUCED, pytest.approx(se))
    assert verdict(a, b, "lower")[0] == OPPOSITE  # b is higher, the paper says lower (e.g. FD)
    assert verdict(b, a, "lower")[0] == REPRODUCED
    close = [0.52, 0.40, 0.61]  # a difference inside two standard errors
    assert verdict(b, close, "higher")[0] == CANNOT_TELL and verdict(b, close, "lower")[0] == CANNOT_TELL
    assert verdict([0.1], b, "higher") == (CANNOT_TELL, None)  # one run a side: no spread to compare with
    with pytest.raises(ValueError, match="sideways"):
        verdict(a, b, "sideways")


def test_a_table_reports_its_claims_with_the_numbers_behind_them(tmp_path):
    root = tmp_path / "results" / "tiny"
    values = {"ta_s0": 0.20, "ta_s1": 0.25, "ta_s2": 0.30, "ia_s0": 0.50, "ia_s1": 0.55, "ia_s2": 0.65}
    for run, v in values.items():
        write_json(root / "eval" / run / "colour_probe.json", {"accuracy": v, "images": 60, "chance": 0.1})
    ref = tmp_path / "reference.yaml"
    ref.write_text(yaml.safe_dump({"values": {}}))
    spec = {"metrics": ["colour_probe"],
            "rows": [{"label": "TA", "runs": ["ta_s0", "ta_s1", "ta_s2"]},
                     {"label": "TA+IA", "runs": ["ia_s0", "ia_s1", "ia_s2"]}],
            "compare": [{"claim": "IA helps", "metric": "colour_probe", "a": "TA", "b": "TA+IA", "paper": "higher"}]}
    table = build_table("T-X", spec, root, reference=load_reference(ref))
    (c,) = table.compared
    assert (c.mean_a, c.mean_b, c.n_a, c.n_b, c.verdict) == (pytest.approx(0.25), pytest.approx(0.5667, abs=1e-4), 3, 3,
                                                            REPRODUCED)
    md = (root / "tables" / "T-X.md").read_text()
    assert "| IA helps | colour_probe | TA (0.25, 3) | TA+IA (0.5667, 3) | +0.3167 |" in md and "reproduced |" in md
    record = read_json(root / "tables" / "T-X.csv.prov.json")
    assert record["compared"][0]["verdict"] == REPRODUCED and record["compared"][0]["se"] == pytest.approx(c.se)


@pytest.mark.parametrize("entry, key", [
    ({"claim": "x", "metric": "fd", "a": "DiT-I TA", "b": "DiT-I TA+Cutmix", "paper": "lower"},
     "tables.T-IA.compare.0"),
    ({"claim": "x", "metric": "clip_score", "a": "DiT-I TA", "b": "DiT-I TA+CutMix", "paper": "lower"},
     "tables.T-IA.compare.0"),
])
def test_a_claim_naming_no_row_or_metric_of_its_table_is_rejected_at_start_up(entry, key):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["tables"]["T-IA"]["compare"] = [entry]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(config)
