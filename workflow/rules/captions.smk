localrules:
    captions_aio,  # a template over the index: seconds
    captions_ta,  # concatenation of the chunks


rule captions_aio:
    """AIO captions of one image set: "An image of {class name}"."""
    input:
        lambda w: wf.set_source(config, w.set),
    output:
        f"{R}/captions/{{set}}_aio.jsonl",
    params:
        code=wf.code(config, "captions"),
    priority: 10  # data preparation first: training (priority 10 too) waits on it
    log:
        f"{R}/logs/captions_{{set}}_aio.log",
    shell:
        "imagenet-t2i captions --config {CFG} --images {input} --kind aio --out {output} > {log} 2>&1"


rule captions_ta_chunk:
    """TA captions of one chunk of an image set (the VLM, or the synthetic world's scene captioner)."""
    input:
        images=lambda w: wf.set_source(config, w.set),
        weights=wf.caption_weights(config, "ta"),
    output:
        captions=f"{R}/captions/parts/{{set}}_ta/{{chunk}}.jsonl",
        summary=f"{R}/captions/parts/{{set}}_ta/{{chunk}}.json",
    params:
        code=wf.code(config, "captions", heavy=True),
        captions=wf.output_settings(config["captions"]),
        weights=lambda w, input: f"--weights {input.weights}" if input.weights else "",
    priority: 10
    log:
        f"{R}/logs/captions_{{set}}_ta_{{chunk}}.log",
    conda:
        wf.caption_env(config)
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=4000),
    shell:
        "imagenet-t2i captions --config {CFG} --images {input.images} --kind ta --chunk {wildcards.chunk} "
        "{params.weights} --out {output.captions} > {log} 2>&1"


rule captions_ta:
    """One set's TA caption file from its chunks (`captions.chunks` of them)."""
    input:
        lambda w: wf.chunk_dirs(config, "captions", f"{R}/captions/parts/{w.set}_ta", w.set, ".jsonl"),
    output:
        f"{R}/captions/{{set}}_ta.jsonl",
    params:
        code=wf.code(config, "captions-merge"),
    priority: 10
    log:
        f"{R}/logs/captions_{{set}}_ta.log",
    shell:
        "imagenet-t2i captions-merge --parts {input} --out {output} > {log} 2>&1"
