"""Paper stage: reference values, table assembly and files, figures."""
import csv
import io

import numpy as np
import pytest
import yaml
from PIL import Image

from imagenet_t2i.config import load_config
from imagenet_t2i.evaluation.geneval.prompts import TAGS
from imagenet_t2i.evaluation.geneval.score import summarize
from imagenet_t2i.io import read_json, sha256_file, write_json
from imagenet_t2i.paper.figures import figure_bubble, figure_overfit, figure_qual
from imagenet_t2i.paper.reference import NOT_REPORTED, load_reference
from imagenet_t2i.paper.tables import NOT_RUN, build_table, fd_rise
from imagenet_t2i.provenance import provenance_path
from imagenet_t2i.workflow import table_inputs

from .conftest import REPO

FEATURE_NET = {"arch": "tiny_feature_net", "sha256": "ab" * 32}


def fd_scores(fd: float) -> dict:
    return {"fd": fd, "precision": 0.5 + fd / 100, "recall": 0.4, "density": 0.9, "coverage": 0.7,
            "num_real": 64, "num_fake": 64, "feature_net": FEATURE_NET}


def geneval_summary(correct: dict[str, list[bool]], allow_missing_tags: bool = False) -> dict:
    """A real ``summarize`` output over hand-made per-image results."""
    rows = [{"tag": tag, "correct": c, "metadata": f"{tag}-{i}"} for tag, flags in correct.items()
            for i, c in enumerate(flags)]
    return summarize(rows, allow_missing_tags=allow_missing_tags)


def write_run(root, run: str, fd: float, correct: dict[str, list[bool]], dpg: float) -> None:
    write_json(root / "eval" / run / "fd" / "final.json", fd_scores(fd))
    write_json(root / "eval" / run / "geneval" / "summary.json", geneval_summary(correct))
    write_json(root / "eval" / run / "dpg" / "scores.json",
               {"overall": dpg, "l1": {"relation": dpg - 3.0, "entity": dpg + 1.0}, "num_items": 5})


@pytest.fixture()
def world(tmp_path):
    """Score files of three seeds of run a, one run b; a synthetic-world config; a small reference file."""
    root = tmp_path / "results" / "tiny"
    rng = np.random.default_rng(0)
    for n, run in enumerate(["a_s0", "a_s1", "a_s2", "b"]):
        correct = {t: list(rng.random(6) < 0.3 + 0.1 * n) for t in TAGS}
        write_run(root, run, fd=10.0 + 2.5 * n, correct=correct, dpg=60.0 + n)
    (root / "config.yaml").write_text(yaml.safe_dump({"name": "tiny", "source": {"backend": "synthetic"}}))
    ref = tmp_path / "reference.yaml"
    ref.write_text(yaml.safe_dump({
        "values": {"T-X": {"b": {"source": "test paper, Table 9", "values": {"fd": 1.5}},
                           "SD-XL": {"source": "baseline source", "values": {"geneval_overall": 0.55}}}},
        "claims": {"T-X": [{"text": "reported: b beats a", "source": "test paper, Sec. 4"}]},
        "unreported": {"T-X": "not known to us: the test paper's Table 9 has no other values"},
    }))
    spec = {"title": "test table", "metrics": ["fd", "geneval_overall", "geneval_two_object", "dpg_overall",
                                               "dpg_relation"],
            "rows": [{"label": "A", "runs": ["a_s0", "a_s1", "a_s2"]}, {"label": "B", "runs": ["b"]}]}
    return root, spec, load_reference(ref)


def test_table_means_spread_and_reference_columns(world):
    root, spec, ref = world
    table = build_table("T-X", {**spec, "notes": ["how row B was sampled is unknown"]}, root, reference=ref)
    rows = {r.label: r for r in table.rows}
    assert list(rows) == ["A", "B", "SD-XL"]  # unmatched reference row appended as a baseline

    a_runs = ["a_s0", "a_s1", "a_s2"]
    fds = [read_json(root / "eval" / r / "fd" / "final.json")["fd"] for r in a_runs]
    two = [read_json(root / "eval" / r / "geneval" / "summary.json")["tags"]["two_object"]["score"] for r in a_runs]
    rel = [read_json(root / "eval" / r / "dpg" / "scores.json")["l1"]["relation"] for r in a_runs]
    cell = rows["A"].cells["fd"]
    assert cell.n == 3 and cell.mean == pytest.approx(np.mean(fds)) and cell.std == pytest.approx(np.std(fds, ddof=1))
    assert rows["A"].cells["geneval_two_object"].mean == pytest.approx(np.mean(two))
    assert rows["A"].cells["dpg_relation"].mean == pytest.approx(np.mean(rel))
    assert rows["B"].cells["fd"].std is None and rows["B"].cells["fd"].n == 1
    assert rows["B"].cells["fd"].reported.value == 1.5 and rows["A"].cells["fd"].reported is None
    assert rows["SD-XL"].baseline and rows["SD-XL"].cells["geneval_overall"].reported.value == 0.55

    parsed = {r["row"]: r for r in csv.DictReader(io.StringIO(table.files[".csv"].read_text()))}
    assert float(parsed["A"]["fd (ours)"]) == pytest.approx(np.mean(fds))
    assert float(parsed["A"]["fd (ours std)"]) == pytest.approx(np.std(fds, ddof=1))
    assert parsed["A"]["n"] == "3" and parsed["A"]["runs"] == "a_s0 a_s1 a_s2"
    assert parsed["A"]["fd paper (reported)"] == NOT_REPORTED
    assert float(parsed["B"]["fd paper (reported)"]) == 1.5 and parsed["B"]["fd (ours std)"] == ""
    assert parsed["B"]["fd ours - paper"] == ""  # a synthetic world's FD is not comparable with the paper's FID
    assert parsed["SD-XL"]["fd (ours)"] == NOT_RUN and parsed["SD-XL"]["geneval_overall paper (reported)"] == "0.55"

    md = table.files[".md"].read_text()
    assert md.startswith("# T-X: test table") and "NOT ImageNet" in md
    assert "| row | runs | n | fd (ours) |" in md and "fd paper (reported)" in md
    a_line = next(line for line in md.splitlines() if line.startswith("| A |"))
    assert "±" in a_line and NOT_REPORTED in a_line
    assert "reported: b beats a (test paper, Sec. 4)" in md and "test paper, Table 9: B / fd = 1.5" in md
    assert "tiny_feature_net" in md and "Notes:\n- how row B was sampled is unknown" in md
    assert "ours - paper" not in md
    assert f'Cells marked "{NOT_REPORTED}": not known to us: the test paper\'s Table 9 has no other values' in md
    tex = table.files[".tex"].read_text()
    assert r"\begin{tabular}" in tex and r"geneval\_overall (ours)" in tex and r"$\pm$" in tex


def test_ours_minus_paper_only_for_imagenet_and_where_both_values_exist(world):
    """At paper scale the tables subtract the paper's reported value from ours; a synthetic world's never."""
    root, spec, ref = world
    table = build_table("T-X", spec, root, reference=ref,
                        config={"name": "paper", "source": {"backend": "imagenet"}})
    parsed = {r["row"]: r for r in csv.DictReader(io.StringIO(table.files[".csv"].read_text()))}
    b_fd = read_json(root / "eval" / "b" / "fd" / "final.json")["fd"]
    assert float(parsed["B"]["fd ours - paper"]) == pytest.approx(b_fd - 1.5)  # only where both exist
    assert parsed["A"]["fd ours - paper"] == parsed["SD-XL"]["geneval_overall ours - paper"] == ""
    md = table.files[".md"].read_text()
    assert "fd ours - paper" in md and "geneval_overall ours - paper" not in md  # a column only where compared
    assert f"{b_fd - 1.5:+.4g}" in next(line for line in md.splitlines() if line.startswith("| B |"))


def test_table_provenance_names_every_score_file(world):
    root, spec, ref = world
    table = build_table("T-X", spec, root, out=root / "tables" / "T-X.md", reference=ref)
    assert table.files[".csv"] == root / "tables" / "T-X.csv"
    record = read_json(provenance_path(table.files[".csv"]))
    assert record["stage"] == "paper" and record["table_id"] == "T-X"
    assert record["cells"]["A|fd"] == [str(root / "eval" / r / "fd" / "final.json") for r in ["a_s0", "a_s1", "a_s2"]]
    assert record["cells"]["B|dpg_relation"] == [str(root / "eval" / "b" / "dpg" / "scores.json")]
    assert "SD-XL|geneval_overall" not in record["cells"]  # not run by us: nothing to trace
    score_files = {p for paths in record["cells"].values() for p in paths}
    assert len(score_files) == 12  # 4 runs x 3 score files
    for path in score_files:
        assert record["inputs"][path]["sha256"] == sha256_file(path)
    assert record["inputs"]["reference_values"]["path"] == ref.path
    assert set(record["outputs"]) == {str(p) for p in table.files.values()}
    assert record["reported"]["B|fd"] == {"value": 1.5, "text": "1.5", "source": "test paper, Table 9"}


def test_fd_rise_is_how_far_fd_has_turned_upward_by_the_end(world):
    """F-OVERFIT's claim as a table metric: final FD minus the lowest FD over the eval checkpoints and the end."""
    root, spec, ref = world
    for run, curve in {"a_s0": [30.0, 12.0, 18.0], "a_s1": [25.0, 14.0, 15.0], "a_s2": [20.0, 11.0, 11.0],
                       "b": [40.0, 20.0, 16.0]}.items():  # FD at steps 300 and 600, then the final one
        for step, fd in zip((300, 600), curve):
            write_json(root / "eval" / run / "fd" / f"step-{step:07d}.json", fd_scores(fd))
        write_json(root / "eval" / run / "fd" / "final.json", fd_scores(curve[-1]))
        write_json(root / "eval" / run / "fd" / "step-0000300.json.prov.json", {"outputs": {}})  # the rule's record
    table = build_table("T-X", {**spec, "metrics": ["fd", "fd_rise"]}, root, reference=ref)
    a, b = (row.cells["fd_rise"] for row in table.rows[:2])
    assert a.values == [6.0, 1.0, 0.0] and b.values == [0.0]
    assert a.files[:3] == [str(root / "eval" / "a_s0" / "fd" / f) for f in
                           ("step-0000300.json", "step-0000600.json", "final.json")]
    assert "fd_rise: FD at the end of the run minus its lowest FD" in (root / "tables" / "T-X.md").read_text()
    for curve, rise in (([33.0, 102.0, 104.0, 80.0, 51.0, 34.0], 0.0), ([10.0, 50.0, 20.0, 30.0], 10.0)):
        fd_dir = root / "eval" / "early_dip" / "fd"  # an early model's low FD is not where the end rose from
        for old in fd_dir.glob("*.json"):
            old.unlink()
        for i, fd in enumerate(curve[:-1]):
            write_json(fd_dir / f"step-{300 * (i + 1):07d}.json", fd_scores(fd))
        write_json(fd_dir / "final.json", fd_scores(curve[-1]))
        assert fd_rise(fd_dir)[0] == rise
    (root / "eval" / "b" / "fd" / "final.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"eval/b/fd/final.json is missing"):
        build_table("T-X", {**spec, "metrics": ["fd_rise"]}, root, reference=ref)


def test_a_flow_objective_world_says_so_in_every_table(world):
    """A deviation from the paper's epsilon objective is stated in the table's header, with the CutMix gate's noise
    level on both paths; a paper-objective world's tables say nothing of it."""
    root, spec, ref = world
    build_table("T-X", spec, root, reference=ref)
    assert "rectified flow" not in (root / "tables" / "T-X.md").read_text()
    config = {"name": "compose", "source": {"backend": "synthetic"},
              "train": {"objective": "flow", "cutmix": {"tau": 0.4}}}
    build_table("T-X", spec, root, reference=ref, config=config)
    for suffix in (".md", ".tex"):
        text = (root / "tables" / f"T-X{suffix}").read_text()
        assert "NOT the paper's epsilon objective" in text
        assert "gamma 0.692 at t = 0.4 on the flow path, 0.600 on the paper's training schedule" in text
        assert "with Euler sampling" in text
    build_table("T-X", spec, root, reference=ref, config={**config, "sample": {"sampler": "ddpm"}})
    assert "with ancestral DDPM sampling" in (root / "tables" / "T-X.md").read_text()
    assert "Captions dropped" not in (root / "tables" / "T-X.md").read_text()


def test_another_caption_dropout_than_the_papers_is_stated(world):
    """train.cfg_dropout other than the paper's 0.1 is a deviation the table's header names; 0.1 says nothing."""
    root, spec, ref = world
    config = {"name": "compose", "source": {"backend": "synthetic"}, "train": {"cfg_dropout": 0.1}}
    build_table("T-X", spec, root, reference=ref, config=config)
    assert "Captions dropped" not in (root / "tables" / "T-X.md").read_text()
    build_table("T-X", spec, root, reference=ref, config={**config, "train": {"cfg_dropout": 0.3}})
    md = (root / "tables" / "T-X.md").read_text()
    assert "guidance with p = 0.3 (`train.cfg_dropout`), NOT the paper's 0.1" in md
    assert "guidance with p = 0.3" in (root / "tables" / "T-X.tex").read_text()


def test_table_errors_name_file_and_target(world):
    root, spec, ref = world
    (root / "eval" / "b" / "dpg" / "scores.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"eval/b/dpg/scores.json is missing; build it with: snakemake"):
        build_table("T-X", spec, root, reference=ref)
    with pytest.raises(ValueError, match="unknown metric 'clip'"):
        build_table("T-X", {**spec, "metrics": ["clip"]}, root, reference=ref)
    partial = {t: [True, False] for t in TAGS if t != "position"}
    write_json(root / "eval" / "a_s0" / "geneval" / "summary.json", geneval_summary(partial, allow_missing_tags=True))
    with pytest.raises(ValueError, match="no images for GenEval tag 'position'"):
        build_table("T-X", {**spec, "metrics": ["geneval_position"]}, root, reference=ref)
    assert not (root / "tables").exists()  # nothing half-written


def test_shipped_reference_values_match_paper_spec():
    ref = load_reference()
    runs = ["dit_i_ta", "dit_i_ta_cutmix", "cad_i_ta", "cad_i_ta_cutmix"]
    fid = {run: ref.reported("T-IA", run, "fd") for run in runs}
    assert {r: v.value for r, v in fid.items()} == {"dit_i_ta": 6.29, "dit_i_ta_cutmix": 7.30, "cad_i_ta": 6.16,
                                                    "cad_i_ta_cutmix": 6.62}
    assert all("2502.21318" in v.source and "Inception" in v.note for v in fid.values())
    assert fid["dit_i_ta_cutmix"].text == "7.30"  # printed as the paper wrote it
    assert ref.reported("T-TA", "dit_i_ta", "fd") is None and ref.reported("T-IA", "dit_i_ta", "precision") is None
    assert ref.rows("T-GENEVAL") == ["SD v1.5", "SD v2.1", "SD-XL", "PixArt-alpha"] == ref.rows("T-DPG")
    assert ref.reported("T-GENEVAL", "SD-XL", "geneval_overall").value == 0.55
    assert ref.reported("T-DPG", "SD-XL", "dpg_overall").value == 74.65
    assert ref.rows("T-TA") == ref.rows("T-CM") == ref.rows("T-RES") == ref.rows("T-AES") == []
    assert any("200k" in c.text for c in ref.claims("F-OVERFIT"))
    assert any("+6%" in c.text and "v3" in c.source for c in ref.claims("T-GENEVAL"))


def _fd_series(root, run: str, steps: dict[int, float], final: float) -> None:
    for step, fd in steps.items():
        write_json(root / "eval" / run / "fd" / f"step-{step:07d}.json", fd_scores(fd))
    write_json(root / "eval" / run / "fd" / "final.json", fd_scores(final))


def test_figure_overfit(tmp_path):
    root = tmp_path / "results"
    _fd_series(root, "ta_s0", {150: 30.0, 300: 20.0}, 25.0)
    _fd_series(root, "ta_s1", {150: 34.0, 300: 22.0}, 29.0)
    _fd_series(root, "ta_ia", {150: 31.0, 300: 21.0, 600: 99.0}, 18.0)
    for run in ["ta_s0", "ta_s1"]:
        write_json(root / "runs" / run / "provenance.json", {"summary": {"step": 600}})
    (root / "runs" / "ta_ia").mkdir(parents=True)
    (root / "runs" / "ta_ia" / "train.csv").write_text("step,loss\n1,1.0\n599,0.1\n600,0.1\n")
    spec = {"title": "FD vs step", "panels": [{"title": "DiT-I", "lines": [
        {"label": "TA", "runs": ["ta_s0", "ta_s1"]}, {"label": "TA+IA", "runs": ["ta_ia"]}]}]}
    out = figure_overfit("F-OVERFIT", spec, root, tmp_path / "figures" / "F-OVERFIT.png")
    ta, ia = out["series"]["DiT-I"]["TA"], out["series"]["DiT-I"]["TA+IA"]
    assert ta["steps"] == [150, 300, 600] and ta["mean"] == pytest.approx([32.0, 21.0, 27.0])
    assert ta["std"] == pytest.approx([np.std([30, 34], ddof=1), np.std([20, 22], ddof=1), np.std([25, 29], ddof=1)])
    assert ia["mean"] == pytest.approx([31.0, 21.0, 18.0]) and ia["std"] is None  # final.json replaces step 600
    assert out["png"].stat().st_size > 1000 and out["pdf"].read_bytes()[:4] == b"%PDF"
    with Image.open(out["png"]) as im:
        assert im.size[0] > im.size[1] > 100
    record = read_json(provenance_path(out["png"]))
    assert str(root / "runs" / "ta_ia" / "train.csv") in record["inputs"]
    assert str(root / "eval" / "ta_s1" / "fd" / "step-0000150.json") in record["inputs"]
    assert any("200k" in c for c in record["claims"])

    (root / "eval" / "ta_ia" / "fd" / "final.json").unlink()
    with pytest.raises(FileNotFoundError, match="ta_ia/fd/final.json is missing"):
        figure_overfit("F-OVERFIT", spec, root, tmp_path / "figures" / "F-OVERFIT.png")


def test_figure_qual(tmp_path):
    images = {}
    for r, run in enumerate(["ta", "ta_ia"]):
        for p, prompt in enumerate(["a red circle", "a blue square in the lower right of the image"]):
            path = tmp_path / run / f"{p}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(np.full((32, 32, 3), 60 * (r + 2 * p), np.uint8)).save(path)
            images[(run, prompt)] = path
    out = figure_qual(images, tmp_path / "F-QUAL", column_labels={"ta": "TA", "ta_ia": "TA+IA"}, title="samples")
    with Image.open(out["png"]) as im:
        assert im.size[1] > 200 and np.asarray(im.convert("L")).std() > 0
    assert out["pdf"].read_bytes()[:4] == b"%PDF"
    record = read_json(provenance_path(out["png"]))
    assert record["inputs"]["ta_ia|a red circle"]["sha256"] == sha256_file(images[("ta_ia", "a red circle")])
    del images[("ta", "a red circle")]
    with pytest.raises(ValueError, match=r"missing \(run, prompt\) \[\('ta', 'a red circle'\)\]"):
        figure_qual(images, tmp_path / "F-QUAL2")


def test_colour_probe_diagnostic_is_a_table_metric(world):
    root, spec, ref = world
    for n, run in enumerate(["a_s0", "a_s1", "a_s2", "b"]):
        write_json(root / "eval" / run / "colour_probe.json",
                   {"accuracy": 0.2 * n, "correct": n, "images": 5, "chance": 0.1, "per_colour": {}})
    table = build_table("T-X", {**spec, "metrics": ["colour_probe"]}, root, reference=ref)
    rows = {r.label: r for r in table.rows}
    assert rows["A"].cells["colour_probe"].mean == pytest.approx(0.2)
    assert rows["B"].cells["colour_probe"].values == [pytest.approx(0.6)]
    assert rows["B"].cells["colour_probe"].reported is None  # the paper has no such metric
    with pytest.raises(ValueError, match="colour_probe"):
        build_table("T-X", {**spec, "metrics": ["colour_prob"]}, root, reference=ref)


def test_figure_bubble_puts_our_runs_beside_the_published_models(world, tmp_path):
    """F-BUBBLE: our scores and parameter counts (from the run records), the reference models' from the reference
    file; a reference model without a parameter count is left out and named."""
    root, _, _ = world
    for run, params in (("a_s0", 400_000_000), ("a_s1", 400_000_000), ("b", 330_000_000)):
        write_json(root / "runs" / run / "provenance.json", {"summary": {"parameters": params}})
    ref = tmp_path / "bubble_reference.yaml"
    ref.write_text(yaml.safe_dump({"values": {
        "F-BUBBLE": {"SD-XL": {"source": "sizes source", "values": {"parameters": 2.6e9}}},
        "T-GENEVAL": {"SD-XL": {"source": "geneval source", "values": {"geneval_overall": 0.55}},
                      "PixArt-alpha": {"source": "geneval source", "values": {"geneval_overall": 0.48}}},
        "T-DPG": {"SD-XL": {"source": "dpg source", "values": {"dpg_overall": 74.65}}}}}))
    spec = {"runs": [{"label": "A", "runs": ["a_s0", "a_s1"]}, {"label": "B", "runs": ["b"]}],
            "references": ["SD-XL", "PixArt-alpha"]}
    result = figure_bubble("F-BUBBLE", spec, root, tmp_path / "F-BUBBLE", reference=load_reference(ref))
    geneval = {p["label"]: p for p in result["points"]["geneval_overall"]}
    a = [read_json(root / "eval" / r / "geneval" / "summary.json")["overall"] for r in ("a_s0", "a_s1")]
    assert geneval["A"]["value"] == pytest.approx(np.mean(a)) and geneval["A"]["n"] == 2
    assert geneval["B"]["parameters"] == 330_000_000 and geneval["SD-XL"]["value"] == 0.55
    assert "sizes source" in geneval["SD-XL"]["source"] and not geneval["SD-XL"]["ours"]
    dpg = {p["label"]: p for p in result["points"]["dpg_overall"]}
    assert dpg["B"]["value"] == read_json(root / "eval" / "b" / "dpg" / "scores.json")["overall"]
    assert dpg["SD-XL"]["value"] == 74.65 and "PixArt-alpha" not in dpg
    assert any(s.startswith("PixArt-alpha") and "no parameter count" in s for s in result["left_out"])
    assert result["png"].stat().st_size > 1000 and result["pdf"].is_file()
    record = read_json(provenance_path(result["png"]))
    assert str(root / "runs" / "b" / "provenance.json") in record["inputs"]


def test_a_table_with_fd_rise_waits_for_fd_at_every_eval_checkpoint():
    config = load_config(REPO / "config" / "config.yaml")
    config["tables"]["T-TA"]["metrics"] = ["fd_rise"]
    inputs = set(table_inputs(config, "T-TA"))
    assert "results/tiny/eval/dit_i_ta/fd/step-0000300.json" in inputs
    assert {f"results/tiny/eval/cad_i_aio/fd/{f}.json" for f in ("step-0000300", "step-0000600", "final")} <= inputs
