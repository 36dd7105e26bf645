# Diagnostics, not paper metrics: colour probe, denoising profile (imagenet_t2i.cli.diagnostics,
# imagenet_t2i.evaluation.diagnostics).

rule colour_probe:
    """Tiny-world diagnostic, not a paper metric: does the model paint the prompted colour (any shape)?"""
    input:
        model=f"{R}/runs/{{run}}/final",
        vae=wf.weights_inputs(config, "autoencoder"),
        uncond=lambda w: wf.run_shards(config, w.run)[0],
        embeddings=wf.embeddings_path(config, "grid"),
    output:
        result=f"{R}/eval/{{run}}/colour_probe.json",
        images=directory(f"{R}/eval/{{run}}/colour_probe"),
    params:
        code=wf.code(config, "colour-probe", heavy=True),
        sample=wf.output_settings(config["sample"]),
        eval=config["eval"]["steps"],
        probe=wf.output_settings(config["eval"]["colour_probe"]),
        vocabulary=[config["source"].get("classes"), config["source"].get("colors")],
    log:
        f"{R}/logs/colour_probe_{{run}}.log",
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=2000),
    shell:
        "imagenet-t2i colour-probe --config {CFG} --model {input.model} --uncond {input.uncond} "
        "--embeddings {input.embeddings} --images {output.images} --out {output.result} > {log} 2>&1"


rule denoise_profile:
    """Diagnostic: x0-prediction MSE per noise level beside predicting 0 (a checkpoint check before sampling)."""
    input:
        model=f"{R}/runs/{{run}}/final",
        shards=lambda w: wf.denoise_shards(config, w.run),
    output:
        f"{R}/eval/{{run}}/denoise_profile.json",
    params:
        code=wf.code(config, "denoise-profile", heavy=True),
        denoise=wf.output_settings(config["eval"]["denoise"]),
    log:
        f"{R}/logs/denoise_profile_{{run}}.log",
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=2000),
    shell:
        "imagenet-t2i denoise-profile --config {CFG} --model {input.model} --shards {input.shards} "
        "--out {output} > {log} 2>&1"
