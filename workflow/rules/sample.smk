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
        code=CODE,
        sample=config["sample"],
    log:
        f"{R}/logs/sample_{{run}}.log",
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=2000),
    shell:
        "imagenet-t2i sample --config {CFG} --model {input.model} --uncond {input.shards} "
        "--embeddings {input.embeddings} --out {output.images} --grid {output.grid} > {log} 2>&1"
