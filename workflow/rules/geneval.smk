# GenEval: prompts, sampling, perception, official scoring (imagenet_t2i.cli.geneval, imagenet_t2i.evaluation.geneval).
# Light rules run where snakemake runs, also under --executor slurm (seconds of CPU each).
localrules:
    geneval_prompts,
    geneval_score,


rule geneval_prompts:
    """GenEval metadata over the world's vocabulary (the official generator, seed 43)."""
    output:
        f"{R}/eval/geneval_prompts.jsonl",
    params:
        code=wf.code(config, "geneval prompts"),
        geneval=wf.output_settings(config["eval"]["geneval"]),
    log:
        f"{R}/logs/geneval_prompts.log",
    shell:
        "imagenet-t2i geneval prompts --config {CFG} --out {output} > {log} 2>&1"


rule geneval_sample:
    """Samples of every GenEval prompt in the official folder layout."""
    input:
        model=lambda w: wf.model_dir(config, w.run, "final"),
        vae=wf.weights_inputs(config, "autoencoder"),
        prompts=f"{R}/eval/geneval_prompts.jsonl",
        uncond=lambda w: wf.run_uncond(config, w.run),
        embeddings=wf.embeddings_path(config, "geneval"),
    output:
        directory(f"{R}/eval/{{run}}/geneval/images"),
    params:
        code=wf.code(config, "geneval sample", heavy=True),
        sample=wf.output_settings(config["sample"]),
        eval=config["eval"]["steps"],
        options=lambda w: wf.sampling_options(config, w.run),
    log:
        f"{R}/logs/geneval_sample_{{run}}.log",
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=2000),
    shell:
        "imagenet-t2i geneval sample --config {CFG} --model {input.model} --prompts {input.prompts} "
        "--uncond {input.uncond} --embeddings {input.embeddings} --out {output} {params.options} > {log} 2>&1"


if config["eval"]["perception"] == "official":

    rule geneval_detect:
        """Perception, official: Mask2Former Swin-S (mmdet 2.x) + open_clip ViT-L-14 in envs/geneval.yaml (untested here)."""
        input:
            images=f"{R}/eval/{{run}}/geneval/images",
            detector=wf.named_weights(config, config["eval"]["geneval"].get("detector")),
            clip=wf.named_weights(config, config["eval"]["geneval"].get("clip")),
        output:
            detections=f"{R}/eval/{{run}}/geneval/detections.jsonl",
            meta=f"{R}/eval/{{run}}/geneval/detections.jsonl.meta.json",
        params:
            code=wf.script_code(config, "evaluation.geneval.official"),
            script=f"{workflow.basedir}/src/imagenet_t2i/evaluation/geneval/official.py",
            models=wf.official_geneval_args(config),
        conda:
            "../../envs/geneval.yaml"
        log:
            f"{R}/logs/geneval_detect_{{run}}.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=16000),
        shell:
            "python {params.script} --images {input.images} --out {output.detections} {params.models} "
            "--meta {output.meta} > {log} 2>&1"

else:

    rule geneval_detect:
        """Perception: raw detections of every GenEval sample (tiny: the pixel detector; portable: transformers)."""
        input:
            images=f"{R}/eval/{{run}}/geneval/images",
            weights=wf.named_weights(config, *wf.portable_geneval(config)),
        output:
            f"{R}/eval/{{run}}/geneval/detections.jsonl",
        params:
            code=wf.code(config, "geneval detect", heavy=config["eval"]["perception"] != "tiny"),
            perception=config["eval"]["perception"],
        log:
            f"{R}/logs/geneval_detect_{{run}}.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=2000),
        shell:
            "imagenet-t2i geneval detect --config {CFG} --images {input.images} --out {output} > {log} 2>&1"


rule geneval_score:
    """Official GenEval scoring rules over the detections, and the per-tag summary."""
    input:
        images=f"{R}/eval/{{run}}/geneval/images",
        detections=f"{R}/eval/{{run}}/geneval/detections.jsonl",
    output:
        results=f"{R}/eval/{{run}}/geneval/results.jsonl",
        summary=f"{R}/eval/{{run}}/geneval/summary.json",
    params:
        code=wf.code(config, "geneval score") + wf.code(config, "geneval summary"),
    log:
        f"{R}/logs/geneval_score_{{run}}.log",
    shell:
        "(imagenet-t2i geneval score --images {input.images} --detections {input.detections} --out {output.results} "
        "&& imagenet-t2i geneval summary {output.results} --out {output.summary}) > {log} 2>&1"
