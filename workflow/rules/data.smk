rule source:
    """Source images: the synthetic world (tiny) or an ImageNet index (paper)."""
    output:
        directory(f"{R}/data/{{split}}"),
    params:
        code=CODE,
        source=config["source"],
    priority: 10  # data preparation first: training (priority 10 too) waits on it
    log:
        f"{R}/logs/source_{{split}}.log",
    threads: wf.stage_threads(config, "cpu")
    resources:
        **wf.stage_resources(config, "cpu", mem_mb=2000),
    shell:
        "imagenet-t2i source --config {CFG} --split {wildcards.split} --out {output} > {log} 2>&1"


rule augment:
    """One CutMix / Crop composite per training image (paper-spec section 3)."""
    input:
        f"{R}/data/train",
    output:
        directory(f"{R}/augment/{{aug}}"),
    params:
        code=CODE,
        augment=config.get("augment", {}),
    priority: 10  # data preparation first: training (priority 10 too) waits on it
    log:
        f"{R}/logs/augment_{{aug}}.log",
    threads: wf.stage_threads(config, "cpu")
    resources:
        **wf.stage_resources(config, "cpu", mem_mb=2000),
    shell:
        "imagenet-t2i augment --config {CFG} --set {wildcards.aug} --source {input} --out {output} > {log} 2>&1"
