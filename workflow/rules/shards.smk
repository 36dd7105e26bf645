localrules:
    shards,  # hard links and a manifest: seconds, where snakemake runs


rule shards_chunk:
    """Latents + text embeddings of one chunk of an image set with its captions, as WebDataset shards."""
    input:
        images=lambda w: wf.set_source(config, w.set),
        captions=lambda w: wf.caption_inputs(config, w.set, w.kind),
        weights=wf.weights_inputs(config, "autoencoder", "text"),
    output:
        directory(f"{R}/shards/parts/{{set}}_{{kind}}/{{chunk}}"),
    params:
        code=wf.code(config, "shards", heavy=True),
        encode=wf.output_settings({k: v for k, v in config["encode"].items() if k != "val"}),
        resize=config["source"].get("resize", "bicubic"),
        resolution=lambda w: wf.set_resolution(config, w.set),
        captions=lambda w: wf.caption_file(config, w.set, w.kind),
    priority: 10
    log:
        f"{R}/logs/shards_{{set}}_{{kind}}_{{chunk}}.log",
    threads: wf.stage_threads(config, "gpu")  # tiny: 1 (a 2-thread job would starve behind the 1-core jobs)
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=4000),
    shell:
        "OMP_NUM_THREADS={threads} imagenet-t2i shards --config {CFG} --images {input.images} --captions {params.captions} "
        "--chunk {wildcards.chunk} --resolution {params.resolution} --out {output} > {log} 2>&1"


rule shards:
    """One shard set from its chunks (`encode.chunks` of them): shards hard-linked, one manifest."""
    input:
        lambda w: wf.chunk_dirs(config, "encode", f"{R}/shards/parts/{w.set}_{w.kind}", w.set),
    output:
        directory(f"{R}/shards/{{set}}_{{kind}}"),
    params:
        code=wf.code(config, "shards-merge"),
    priority: 10
    log:
        f"{R}/logs/shards_{{set}}_{{kind}}.log",
    shell:
        "imagenet-t2i shards-merge --parts {input} --out {output} > {log} 2>&1"
