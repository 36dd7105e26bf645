# imagenet-t2i: reproduce "How far can we go with ImageNet for Text-to-Image generation?" (arXiv 2502.21318).
# Tiny default: `snakemake --cores 2 reproduce_all`; paper scale (README): `snakemake reproduce_all --configfile
# config/paper.yaml --profile workflow/profiles/slurm --sdm conda` (without the profile the GPU stages stop: no GPU).
from imagenet_t2i import workflow as wf
from snakemake.utils import validate

# A --configfile is a complete config (config/paper.yaml, a test's): it replaces the default, never merges into it.
if not workflow.overwrite_configfiles:
    configfile: f"{workflow.basedir}/config/config.yaml"
# Nested --config values arrive as strings ('0.6'): read back where the schema wants a number, list, ...
wf.typed_overrides(config, workflow.config_settings.overwrite_config)
validate(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml")

R = wf.results_dir(config)
CFG = wf.write_resolved_config(config)

wildcard_constraints:
    split="(train|val|aesthetic)(_[0-9]+px)?",  # _<R>px: a run's side other than source.resolution (runs.<run>.resolution)
    set="(train|val|aesthetic|crop|cutmix_(half|quarter|ninth|sixteenth|all))(_[0-9]+px)?",
    kind="aio|ta",
    aug="(crop|cutmix_(half|quarter|ninth|sixteenth|all))(_[0-9]+px)?",
    run=wf.run_pattern(config),
    ckpt="final|step-[0-9]+",
    chunk="[0-9]+-of-[0-9]+",
    weights="[A-Za-z0-9_.-]+",
    table="|".join(config.get("tables", {})) or "none",

include: "workflow/rules/data.smk"
include: "workflow/rules/captions.smk"
include: "workflow/rules/shards.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/geneval.smk"
include: "workflow/rules/dpg.smk"
include: "workflow/rules/fid.smk"
include: "workflow/rules/diagnostics.smk"
include: "workflow/rules/aesthetic.smk"
include: "workflow/rules/paper.smk"


rule download_weights:
    """Every model and file of the config's weights block, fetched once (run it where the network is reachable)."""
    input:
        wf.all_weights(config),


rule evaluate_released:
    """The released CAD-I (eval.released) scored by our sampling and the official perception, in its table."""
    input:
        lambda w: wf.released_targets(config),


rule reproduce_all:
    """Every run trained and sampled; every table and figure of the config built."""
    default_target: True
    input:
        wf.data_targets(config),
        expand(f"{R}/samples/{{run}}/grid.png", run=config["runs"]),
        wf.paper_targets(config),
