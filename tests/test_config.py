import copy
import subprocess
import sys

import pytest
import yaml

from imagenet_t2i.config import ConfigError, grid_figure, load_config, resolve_run, run_shard_sets, validate_config

from .conftest import REPO

DEFAULT = REPO / "config" / "config.yaml"


def test_default_config_declares_the_paper_grid_for_both_models():
    config = load_config(DEFAULT)
    grid = {(r["model"], r["captions"], r["augment"]) for r in config["runs"].values()}
    for model in ("dit_i", "cad_i"):
        for caps, aug in [("aio", "none"), ("ta", "none"), ("ta", "cutmix"), ("ta", "crop"), ("ta", "cutmix+crop")]:
            assert (model, caps, aug) in grid


def test_defaults_are_filled():
    config = load_config(DEFAULT)
    assert config["train"]["objective"] == "eps"
    assert config["train"]["optimizer"]["cad_i"]["cosine_fraction"] == 0.7


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["train"].pop("steps"), "train"),
        (lambda c: c["train"].__setitem__("stepz", 3), "stepz"),
        (lambda c: c["train"].__setitem__("batch_size", 0), "train.batch_size"),
        (lambda c: c["runs"]["dit_i_ta"].__setitem__("augment", "mixup"), "runs.dit_i_ta.augment"),
        (lambda c: c["runs"]["dit_i_ta"].__setitem__("model", "unet"), "runs.dit_i_ta.model"),
        (lambda c: c["source"].__setitem__("colors", ["red", "teal"]), "source.colors.1"),
        (lambda c: c["source"].__setitem__("placement", "middle"), "source.placement"),
        # the resolution stage: CAD-I's graft doubles the side; no FD of a run at another side than the reference's
        (lambda c: c["runs"]["cad_i_ta_cutmix_64"].__setitem__("resolution", 96), "runs.cad_i_ta_cutmix_64.init_from"),
        (lambda c: c["runs"]["cad_i_ta_cutmix_64"].__setitem__("resolution", 48), "runs.cad_i_ta_cutmix_64.resolution"),
        (lambda c: c["runs"]["cad_i_ta_cutmix_64"].__setitem__("init_from", "dit_i_ta"),
         "runs.cad_i_ta_cutmix_64.init_from"),
        (lambda c: c["tables"]["T-RES"]["metrics"].append("fd"), "tables.T-RES.rows.1"),
        (lambda c: c["runs"]["dit_i_ta"].__setitem__("optimizer", "res_128"), "train.optimizer.res_128"),
        (lambda c: c["figures"]["F-GALLERY"].__setitem__("runs", ["dit_i_tta"]), "figures.F-GALLERY.runs"),
        (lambda c: c["figures"]["F-GALLERY"].__setitem__("prompts", [0, 8]), "figures.F-GALLERY.prompts"),
        (lambda c: c["figures"]["F-QUAL"].__setitem__("prompts", [9]), "figures.F-QUAL.prompts"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(edit, key):
    config = yaml.safe_load(DEFAULT.read_text())
    edit(config)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(config)


def test_the_gallery_shows_every_run_and_prompt_unless_told_otherwise():
    config = load_config(DEFAULT)
    runs, prompts = grid_figure(config, "F-GALLERY")
    assert runs == list(config["runs"]) and prompts == list(range(len(config["sample"]["grid_prompts"])))
    assert grid_figure(config, "F-QUAL") == (config["figures"]["F-QUAL"]["runs"], config["figures"]["F-QUAL"]["prompts"])


def test_resolve_run_merges_optimizer_and_steps():
    config = load_config(DEFAULT)
    config = copy.deepcopy(config)
    config["runs"]["cad_i_ta_cutmix_crop"]["steps"] = 7
    run = resolve_run(config, "cad_i_ta_cutmix_crop")
    assert run["train"]["steps"] == 7
    assert run["train"]["optimizer"] == config["train"]["optimizer"]["cad_i"]
    assert run_shard_sets(run) == {"train": "train_ta", "cutmix": "cutmix_all_ta", "crop": "crop_ta"}
    ablation = resolve_run(config, "dit_i_ta_cm_tau0")
    assert ablation["train"]["cutmix"]["tau"] == 0.0 and config["train"]["cutmix"]["tau"] == 0.4
    assert run_shard_sets(resolve_run(config, "dit_i_ta_cm_half"))["cutmix"] == "cutmix_half_ta"
    with pytest.raises(ConfigError, match="runs.nope"):
        resolve_run(config, "nope")


def test_cli_rejects_bad_config_with_exit_code_and_key(tmp_path):
    config = yaml.safe_load(DEFAULT.read_text())
    config["sample"]["guidance"] = "high"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "imagenet_t2i.cli", "validate", "--config", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "sample.guidance" in proc.stderr


def test_paper_config_keeps_the_official_cad_i_recipe():
    paper = load_config(REPO / "config" / "paper.yaml")
    assert paper["train"]["optimizer"]["cad_i"]["name"] == "lamb"
    assert paper["train"]["ema"]["decay"] == 0.0001 and paper["seed"] == 3407


def test_compose_config_builds_the_claims_tables_over_three_seeds():
    """config/compose.yaml (docs/compose.md): T-TA, T-IA, T-OVERFIT and F-OVERFIT rows over seeds 0-2, T-CM's extra
    patterns once, every claim a compare entry on its own rows, the flow objective, and a train set small enough for
    the TA run to see 150+ epochs."""
    compose = load_config(REPO / "config" / "compose.yaml")
    assert compose["train"]["objective"] == "flow" and compose["replicates"] == [0, 1, 2]
    assert set(compose["tables"]) == {"T-TA", "T-IA", "T-CM", "T-OVERFIT"} and set(compose["figures"]) == {"F-OVERFIT"}
    for tid in ("T-TA", "T-IA", "T-OVERFIT"):
        assert all(len(row["runs"]) == 3 for row in compose["tables"][tid]["rows"]), tid
        assert compose["tables"][tid]["compare"], tid
    cm = {row["label"]: row["runs"] for row in compose["tables"]["T-CM"]["rows"]}
    assert cm["CM 1/2"] == ["dit_i_ta_cm_half"] and len(cm["CM all (tau 0.4)"]) == 3
    epochs = compose["train"]["steps"] * compose["train"]["batch_size"] / compose["source"]["num_train"]
    assert epochs >= 150


def test_a_run_kept_out_of_the_replicates_is_trained_once():
    """T-CM's extra patterns at one seed beside 3-seed rows: only the replicated runs are repeated."""
    config = yaml.safe_load(DEFAULT.read_text())
    config["replicates"] = [0, 1, 2]
    config["runs"]["dit_i_ta_cm_half"]["replicated"] = False
    validate_config(config)
    assert "dit_i_ta_cm_half_s1" not in config["runs"] and "dit_i_ta_cm_quarter_s1" in config["runs"]
    rows = {row["label"]: row["runs"] for row in config["tables"]["T-CM"]["rows"]}
    assert rows["CM 1/2"] == ["dit_i_ta_cm_half"]
    assert rows["CM all (tau 0.4)"] == ["dit_i_ta_cutmix", "dit_i_ta_cutmix_s1", "dit_i_ta_cutmix_s2"]
    config = yaml.safe_load(DEFAULT.read_text())  # a replicated child of a run trained once starts from that run
    config["replicates"] = [0, 1]
    config["runs"]["cad_i_ta_cutmix"]["replicated"] = False
    validate_config(config)
    assert config["runs"]["cad_i_ta_cutmix_64_s1"]["init_from"] == "cad_i_ta_cutmix"


def test_replicates_add_seeded_runs_and_widen_table_rows():
    config = yaml.safe_load(DEFAULT.read_text())
    config["replicates"] = [0, 1, 2]
    validate_config(config)
    assert config["runs"]["cad_i_ta_s2"]["seed"] == 2
    assert config["tables"]["T-TA"]["rows"][0]["runs"] == ["dit_i_aio", "dit_i_aio_s1", "dit_i_aio_s2"]
    n = len(config["runs"])
    validate_config(config)  # idempotent: the written resolved config validates unchanged
    assert len(config["runs"]) == n


def test_released_evaluation_is_checked_naming_the_key():
    """eval.released: a weights entry, no run of that name, a table showing it; a table row of the released CAD-I
    without eval.released names the key to set."""
    from imagenet_t2i import workflow as wf

    paper = load_config(REPO / "config" / "paper.yaml")
    assert wf.released_targets(paper) == ["results/paper/tables/T-RELEASED.md"]
    assert wf.run_captions(paper, "released_cad_i") == "ta"
    assert wf.model_dir(paper, "released_cad_i", "final") == wf.run_uncond(paper, "released_cad_i") \
        == "results/paper/released/released_cad_i"
    assert wf.sampling_options(paper, "dit_i_ta") == "" and "--guidance 16.0 --clamp 1.2" in \
        wf.sampling_options(paper, "released_cad_i")
    with pytest.raises(ValueError, match="only 'final'"):
        wf.model_dir(paper, "released_cad_i", "step-0100000")
    bad = copy.deepcopy(paper)
    bad["eval"]["released"]["weights"] = "nope"
    with pytest.raises(ConfigError, match="eval.released.weights"):
        validate_config(bad)
    bad = copy.deepcopy(paper)
    del bad["tables"]["T-RELEASED"]
    with pytest.raises(ConfigError, match="no table row lists 'released_cad_i'"):
        validate_config(bad)
    bad = copy.deepcopy(paper)
    del bad["eval"]["released"]
    with pytest.raises(ConfigError, match="set eval.released"):
        validate_config(bad)
    del bad["tables"]["T-RELEASED"]
    with pytest.raises(ConfigError, match="eval.released"):
        wf.released_targets(validate_config(bad))


def test_nested_command_line_values_are_read_back_with_the_schemas_types():
    """What Snakemake makes of ``--config 'train={cutmix: {p: 0.6}}' replicates=[0,1] name=007``."""
    from imagenet_t2i.workflow import typed_overrides

    config = load_config(REPO / "config" / "config.yaml")
    overrides = {"train": {"cutmix": {"p": "0.6"}}, "replicates": ["0", "1"], "name": "007"}
    config["train"]["cutmix"]["p"], config["replicates"], config["name"] = "0.6", ["0", "1"], "007"
    typed_overrides(config, overrides)
    assert config["train"]["cutmix"]["p"] == 0.6 and config["replicates"] == [0, 1]
    assert config["name"] == "007"  # a string where the schema wants one stays as given
    config["train"]["cutmix"]["tau"] = "0.4"  # not from the command line: left to the schema to reject
    typed_overrides(config, overrides)
    assert config["train"]["cutmix"]["tau"] == "0.4"
    with pytest.raises(ConfigError, match="train.cutmix.tau"):
        validate_config(config)


def test_a_16_px_world_validates():
    """docs/compose.md's 16-px world (patch 2: the default's 8 x 8 tokens); the 64-px stage cannot start there."""
    config = yaml.safe_load(DEFAULT.read_text())
    config["source"].update(resolution=16, sizes=["large"])
    with pytest.raises(ConfigError, match=r"runs\.cad_i_ta_cutmix_64\.init_from"):  # 64 is not twice 16
        validate_config(copy.deepcopy(config))
    config["runs"] = {k: v for k, v in config["runs"].items() if "init_from" not in v}
    for t in ("T-RES", "T-AES", "T-GENEVAL", "T-DPG"):
        del config["tables"][t]
    del config["figures"]["F-BUBBLE"]
    assert validate_config(config)["source"]["resolution"] == 16
