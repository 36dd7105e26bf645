rule captions:
    """AIO or TA captions of one image set."""
    input:
        lambda w: wf.set_source(config, w.set),
    output:
        f"{R}/captions/{{set}}_{{kind}}.jsonl",
    params:
        code=CODE,
        captions=config["captions"],
    priority: 10  # data preparation first: training (priority 10 too) waits on it
    log:
        f"{R}/logs/captions_{{set}}_{{kind}}.log",
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=2000),
    shell:
        "imagenet-t2i captions --config {CFG} --images {input} --kind {wildcards.kind} --out {output} > {log} 2>&1"
