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
    threads: 2
    priority: 10
    log:
        f"{R}/logs/shards_{{set}}_{{kind}}.log",
    resources:
        mem_mb=4000,
    shell:
        "imagenet-t2i shards --config {CFG} --images {input.images} --captions {input.captions} "
        "--out {output} > {log} 2>&1"
