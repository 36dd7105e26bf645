localrules:
    weights,  # downloads: the login node reaches the hub, compute nodes often do not
    augment,  # hard links and an index: seconds, where snakemake runs


rule weights:
    """One model folder of the config's weights block: a hub snapshot, or a tiny random-init model (smoke runs)."""
    output:
        directory(f"{R}/weights/{{weights}}"),
    params:
        code=wf.code(config, "weights", heavy=True),
        spec=lambda w: wf.output_settings(config["weights"][w.weights]),
    log:
        f"{R}/logs/weights_{{weights}}.log",
    shell:
        "imagenet-t2i weights --config {CFG} --name {wildcards.weights} --out {output} > {log} 2>&1"


if config["source"].get("fake"):

    rule fake_imagenet:
        """A fake ImageNet for an offline smoke run of the paper stages (source.fake)."""
        output:
            directory(config["source"]["root"]),
        params:
            fake=wf.output_settings(config["source"]["fake"]),
        log:
            f"{R}/logs/fake_imagenet.log",
        shell:
            "imagenet-t2i fake-imagenet --config {CFG} --out {output} > {log} 2>&1"


rule source:
    """Source images: the synthetic world (tiny) or an ImageNet index (paper); <split>_<R>px: the world's split drawn
    again at R px."""
    input:
        wf.source_inputs(config),
        base=lambda w: wf.base_set_dir(config, w.split),
    output:
        directory(f"{R}/data/{{split}}"),
    params:
        code=wf.code(config, "source", heavy=True),
        source=wf.output_settings(config["source"]),
        base=lambda w, input: wf.option("--base", input.base),
    priority: 10  # data preparation first: training (priority 10 too) waits on it
    log:
        f"{R}/logs/source_{{split}}.log",
    threads: wf.stage_threads(config, "cpu")
    resources:
        **wf.stage_resources(config, "cpu", mem_mb=2000),
    shell:
        "imagenet-t2i source --config {CFG} --split {wildcards.split} {params.base} --out {output} > {log} 2>&1"


rule augment_chunk:
    """CutMix / Crop composites of one chunk of the training images (paper-spec section 3); <aug>_<R>px: the base
    set's composites made again at R px."""
    input:
        source=lambda w: wf.augment_source(config, w.aug),
        base=lambda w: wf.base_set_dir(config, w.aug),
    output:
        directory(f"{R}/augment/parts/{{aug}}/{{chunk}}"),
    params:
        code=wf.code(config, "augment", heavy=True),
        augment=wf.output_settings(config.get("augment", {})),
        resize=config["source"].get("resize", "bicubic"),
        release=wf.augment_release(config),
        base=lambda w, input: wf.option("--base", input.base),
    priority: 10
    log:
        f"{R}/logs/augment_{{aug}}_{{chunk}}.log",
    threads: wf.stage_threads(config, "cpu")
    resources:
        **wf.stage_resources(config, "cpu", mem_mb=2000),
    shell:
        "imagenet-t2i augment --config {CFG} --set {wildcards.aug} --source {input.source} {params.base} "
        "--chunk {wildcards.chunk} --out {output} > {log} 2>&1"


rule augment:
    """One augmented set from its chunks (`augment.chunks` of them): images hard-linked, one index."""
    input:
        lambda w: wf.chunk_dirs(config, "augment", f"{R}/augment/parts/{w.aug}", w.aug),
    output:
        directory(f"{R}/augment/{{aug}}"),
    params:
        code=wf.code(config, "augment-merge"),
    priority: 10
    log:
        f"{R}/logs/augment_{{aug}}.log",
    shell:
        "imagenet-t2i augment-merge --parts {input} --out {output} > {log} 2>&1"
