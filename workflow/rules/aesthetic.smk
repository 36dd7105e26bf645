localrules:
    aesthetic_prompts,  # a file from the config: instant


rule aesthetic_prompts:
    """T-AES's prompts (aesthetic.prompts) as the sampler and the prompt-embedding cache read them."""
    output:
        jsonl=f"{R}/eval/aesthetic/prompts.jsonl",
        txt=f"{R}/eval/aesthetic/prompts.txt",
    params:
        code=wf.code(config, "aesthetic prompts"),
        prompts=config.get("aesthetic", {}).get("prompts"),
    log:
        f"{R}/logs/aesthetic_prompts.log",
    shell:
        "imagenet-t2i aesthetic prompts --config {CFG} --out {R}/eval/aesthetic > {log} 2>&1"


rule aesthetic_net:
    """The tiny world's aesthetic scorer, trained on the training split's property (val: the val split)."""
    input:
        train=f"{R}/data/train",
        val=f"{R}/data/val",
    output:
        directory(f"{R}/eval/aesthetic_net"),
    params:
        code=wf.code(config, "aesthetic train-net"),
        net=wf.output_settings(config.get("aesthetic", {}).get("net")),
    log:
        f"{R}/logs/aesthetic_net.log",
    shell:
        "imagenet-t2i aesthetic train-net --config {CFG} --train {input.train} --val {input.val} --out {output} "
        "> {log} 2>&1"


rule aesthetic_sample:
    """A run's samples of the aesthetic prompts (sample.samples_per_prompt each, the grid's sampler)."""
    input:
        model=lambda w: wf.model_dir(config, w.run, "final"),
        vae=wf.weights_inputs(config, "autoencoder"),
        uncond=lambda w: wf.run_uncond(config, w.run),
        embeddings=wf.embeddings_path(config, "aesthetic"),
        prompts=f"{R}/eval/aesthetic/prompts.txt",
    output:
        directory(f"{R}/eval/{{run}}/aesthetic/images"),
    params:
        code=wf.code(config, "sample", heavy=True),
        sample=wf.output_settings(config["sample"]),
    log:
        f"{R}/logs/aesthetic_sample_{{run}}.log",
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=2000),
    shell:
        "imagenet-t2i sample --config {CFG} --model {input.model} --uncond {input.uncond} --embeddings "
        "{input.embeddings} --prompts {input.prompts} --out {output} > {log} 2>&1"


rule aesthetic_score:
    """The tiny world's scorer's scores of a run's aesthetic samples (aesthetic.scorers: world)."""
    input:
        images=f"{R}/eval/{{run}}/aesthetic/images",
        net=lambda w: wf.aesthetic_scorer_inputs(config, w.scorer),
    output:
        f"{R}/eval/{{run}}/aesthetic/{{scorer}}.json",
    wildcard_constraints:
        scorer="world",
    params:
        code=wf.code(config, "aesthetic score"),
        net=lambda w, input: wf.option("--net", input.net),
    log:
        f"{R}/logs/aesthetic_score_{{run}}_{{scorer}}.log",
    shell:
        "imagenet-t2i aesthetic score --config {CFG} --scorer {wildcards.scorer} --images {input.images} {params.net} "
        "--out {output} > {log} 2>&1"


rule aesthetic_score_clip:
    """PickScore or LAION Aesthetics v2 (transformers CLIP, main environment) of a run's aesthetic samples."""
    input:
        images=f"{R}/eval/{{run}}/aesthetic/images",
        prompts=f"{R}/eval/aesthetic/prompts.txt",
        weights=lambda w: wf.aesthetic_scorer_inputs(config, w.scorer),
    output:
        f"{R}/eval/{{run}}/aesthetic/{{scorer}}.json",
    wildcard_constraints:
        scorer="pickscore|laion_aesthetics",
    params:
        code=wf.code(config, "aesthetic score", heavy=True),
        weights=wf.output_settings(config.get("aesthetic", {}).get("weights")),
    log:
        f"{R}/logs/aesthetic_score_{{run}}_{{scorer}}.log",
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=16000),
    shell:
        "imagenet-t2i aesthetic score --config {CFG} --scorer {wildcards.scorer} --images {input.images} "
        "--prompts {input.prompts} --out {output} > {log} 2>&1"


rule aesthetic_score_hpsv21:
    """HPSv2.1 through the official package, in its own environment (envs/hpsv2.yaml, untested here)."""
    input:
        images=f"{R}/eval/{{run}}/aesthetic/images",
        prompts=f"{R}/eval/aesthetic/prompts.txt",
        weights=lambda w: wf.aesthetic_scorer_inputs(config, w.scorer),
    output:
        f"{R}/eval/{{run}}/aesthetic/{{scorer}}.json",
    wildcard_constraints:
        scorer="hpsv21",
    params:
        code=lambda w: wf.script_code(config, "evaluation.aesthetic.official"),
        script=f"{workflow.basedir}/src/imagenet_t2i/evaluation/aesthetic/official.py",
        checkpoint=lambda w: wf.official_aesthetic_args(config, w.scorer),
    conda:
        "../../envs/hpsv2.yaml"
    log:
        f"{R}/logs/aesthetic_score_{{run}}_{{scorer}}.log",
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=16000),
    shell:
        "python {params.script} --scorer {wildcards.scorer} --images {input.images} --prompts {input.prompts} "
        "{params.checkpoint} --out {output} > {log} 2>&1"


use rule aesthetic_score_hpsv21 as aesthetic_score_imagereward with:
    # ImageReward through the official package, in its own environment (envs/imagereward.yaml, untested here)
    wildcard_constraints:
        scorer="imagereward",
    conda:
        "../../envs/imagereward.yaml"
