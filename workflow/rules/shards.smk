rule shards:
    """Latents + text embeddings of one image set with its captions, as WebDataset shards."""
    input:
        images=lambda w: wf.set_source(config, w.set),
        captions=f"{R}/captions/{{set}}_{{kind}}.jsonl",
    output:
        directory(f"{R}/shards/{{set}}_{{kind}}"),
    params:
        code=CODE,
        encode=config["encode"],
    priority: 10
    log:
        f"{R}/logs/shards_{{set}}_{{kind}}.log",
    threads: wf.stage_threads(config, "gpu")  # tiny: 1 (a 2-thread job would starve behind the 1-core jobs)
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=4000),
    shell:
        "OMP_NUM_THREADS={threads} imagenet-t2i shards --config {CFG} --images {input.images} --captions {input.captions} "
        "--out {output} > {log} 2>&1"
