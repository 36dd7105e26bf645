rule sample_grid:
    """A grid of samples of the config's grid prompts from a run's final weights."""
    input:
        model=f"{R}/runs/{{run}}/final",
        vae=wf.weights_inputs(config, "autoencoder"),
        shards=lambda w: wf.run_shards(config, w.run)[0],
        embeddings=wf.embeddings_path(config, "grid"),
    output:
        grid=f"{R}/samples/{{run}}/grid.png",
        images=directory(f"{R}/samples/{{run}}/images"),
    params:
        code=wf.code(config, "sample", heavy=True),
        sample=wf.output_settings(config["sample"]),
    log:
        f"{R}/logs/sample_{{run}}.log",
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=2000),
    shell:
        "imagenet-t2i sample --config {CFG} --model {input.model} --uncond {input.shards} "
        "--embeddings {input.embeddings} --out {output.images} --grid {output.grid} > {log} 2>&1"


rule prompt_embeddings:
    """One set of evaluation prompts encoded once; the sampling jobs read it instead of the text encoder."""
    input:
        texts=lambda w: wf.embedding_inputs(config, w.texts),
        weights=wf.weights_inputs(config, "text"),
    output:
        f"{R}/eval/embeddings/{{texts}}.safetensors",
    wildcard_constraints:
        texts="|".join(wf.EMBEDDING_SETS),
    params:
        code=wf.code(config, "embed", heavy=True),
        text=wf.output_settings(config["encode"]["text"]),
        grid_prompts=config["sample"]["grid_prompts"],
        num_captions=config["eval"]["fd"]["num_samples"],
    log:
        f"{R}/logs/prompt_embeddings_{{texts}}.log",
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=2000),
    shell:
        "imagenet-t2i embed --config {CFG} --texts-from {input.texts} --captions-limit {params.num_captions} "
        "--out {output} > {log} 2>&1"


if config["eval"].get("released"):

    rule released_model:
        """The released CAD-I snapshot (eval.released) as a model folder our sampling reads, with the empty caption
        of encode.text as its unconditional input."""
        input:
            snapshot=wf.named_weights(config, wf.released_weights(config)),
            text=wf.weights_inputs(config, "text"),
        output:
            directory(wf.released_dir(config)),
        params:
            code=wf.code(config, "released", heavy=True),
            snapshot=wf.weights_location(config, wf.released_weights(config)),
            released=wf.output_settings(config["eval"]["released"]),
            text=wf.output_settings(config["encode"]["text"]),
        log:
            f"{R}/logs/released_model.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=16000),
        shell:
            "imagenet-t2i released --config {CFG} --snapshot {params.snapshot} --out {output} > {log} 2>&1"
