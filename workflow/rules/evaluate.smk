# Light rules run where snakemake runs, also under --executor slurm (seconds of CPU each).
localrules:
    geneval_prompts,
    geneval_score,
    dpg_benchmark,
    dpg_score,


rule geneval_prompts:
    """GenEval metadata over the world's vocabulary (the official generator, seed 43)."""
    output:
        f"{R}/eval/geneval_prompts.jsonl",
    params:
        code=CODE,
        geneval=config["eval"]["geneval"],
    log:
        f"{R}/logs/geneval_prompts.log",
    shell:
        "imagenet-t2i geneval prompts --config {CFG} --out {output} > {log} 2>&1"


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
        code=CODE,
        text={k: v for k, v in config["encode"]["text"].items() if k != "batch_size"},
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
            code=CODE,
            snapshot=wf.weights_location(config, wf.released_weights(config)),
            released=config["eval"]["released"],
            text={k: v for k, v in config["encode"]["text"].items() if k != "batch_size"},
        log:
            f"{R}/logs/released_model.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=16000),
        shell:
            "imagenet-t2i released --config {CFG} --snapshot {params.snapshot} --out {output} > {log} 2>&1"


rule geneval_sample:
    """Samples of every GenEval prompt in the official folder layout."""
    input:
        model=lambda w: wf.model_dir(config, w.run, "final"),
        vae=wf.weights_inputs(config, "autoencoder"),
        prompts=f"{R}/eval/geneval_prompts.jsonl",
        uncond=lambda w: wf.run_uncond(config, w.run),
        embeddings=wf.embeddings_path(config, "geneval"),
    output:
        directory(f"{R}/eval/{{run}}/geneval/images"),
    params:
        code=CODE,
        sample=config["sample"],
        eval=config["eval"]["steps"],
        options=lambda w: wf.sampling_options(config, w.run),
    log:
        f"{R}/logs/geneval_sample_{{run}}.log",
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=2000),
    shell:
        "imagenet-t2i geneval sample --config {CFG} --model {input.model} --prompts {input.prompts} "
        "--uncond {input.uncond} --embeddings {input.embeddings} --out {output} {params.options} > {log} 2>&1"


if config["eval"]["perception"] == "official":

    rule geneval_detect:
        """Perception, official: Mask2Former Swin-S (mmdet 2.x) + open_clip ViT-L-14 in envs/geneval.yaml (untested here)."""
        input:
            images=f"{R}/eval/{{run}}/geneval/images",
            detector=wf.named_weights(config, config["eval"]["geneval"].get("detector")),
            clip=wf.named_weights(config, config["eval"]["geneval"].get("clip")),
        output:
            detections=f"{R}/eval/{{run}}/geneval/detections.jsonl",
            meta=f"{R}/eval/{{run}}/geneval/detections.jsonl.meta.json",
        params:
            code=CODE,
            script=f"{workflow.basedir}/src/imagenet_t2i/evaluation/geneval_official.py",
            mmdet_config=config["eval"]["geneval"].get("mmdet_config"),
            checkpoint=wf.weights_file(config, config["eval"]["geneval"].get("detector")),
            clip=wf.weights_file(config, config["eval"]["geneval"].get("clip")),
        conda:
            "../../envs/geneval.yaml"
        log:
            f"{R}/logs/geneval_detect_{{run}}.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=16000),
        shell:
            "python {params.script} --images {input.images} --out {output.detections} --config {params.mmdet_config} "
            "--checkpoint {params.checkpoint} --clip-pretrained {params.clip} --meta {output.meta} > {log} 2>&1"

else:

    rule geneval_detect:
        """Perception: raw detections of every GenEval sample (tiny: the pixel detector; portable: transformers)."""
        input:
            images=f"{R}/eval/{{run}}/geneval/images",
            weights=wf.named_weights(config, *wf.portable_geneval(config)),
        output:
            f"{R}/eval/{{run}}/geneval/detections.jsonl",
        params:
            code=CODE,
            perception=config["eval"]["perception"],
        log:
            f"{R}/logs/geneval_detect_{{run}}.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=2000),
        shell:
            "imagenet-t2i geneval detect --config {CFG} --images {input.images} --out {output} > {log} 2>&1"


rule geneval_score:
    """Official GenEval scoring rules over the detections, and the per-tag summary."""
    input:
        images=f"{R}/eval/{{run}}/geneval/images",
        detections=f"{R}/eval/{{run}}/geneval/detections.jsonl",
    output:
        results=f"{R}/eval/{{run}}/geneval/results.jsonl",
        summary=f"{R}/eval/{{run}}/geneval/summary.json",
    params:
        code=CODE,
    log:
        f"{R}/logs/geneval_score_{{run}}.log",
    shell:
        "(imagenet-t2i geneval score --images {input.images} --detections {input.detections} --out {output.results} "
        "&& imagenet-t2i geneval summary {output.results} --out {output.summary}) > {log} 2>&1"


rule dpg_benchmark:
    """DPG-Bench prompts and questions: the official 1,065 and dpg_bench.csv (paper), or the world's (tiny)."""
    input:
        wf.named_weights(config, config["eval"]["dpg"].get("questions")),
    output:
        prompts=f"{R}/eval/dpg/prompts.jsonl",
        questions=f"{R}/eval/dpg/questions.csv",
    params:
        code=CODE,
        dpg=config["eval"]["dpg"],
    log:
        f"{R}/logs/dpg_benchmark.log",
    shell:
        "imagenet-t2i dpg benchmark --config {CFG} --out $(dirname {output.prompts}) > {log} 2>&1"


rule dpg_sample:
    """One 2x2 grid of samples per DPG prompt."""
    input:
        model=lambda w: wf.model_dir(config, w.run, "final"),
        vae=wf.weights_inputs(config, "autoencoder"),
        prompts=f"{R}/eval/dpg/prompts.jsonl",
        uncond=lambda w: wf.run_uncond(config, w.run),
        embeddings=wf.embeddings_path(config, "dpg"),
    output:
        directory(f"{R}/eval/{{run}}/dpg/grids"),
    params:
        code=CODE,
        sample=config["sample"],
        eval=config["eval"]["steps"],
        options=lambda w: wf.sampling_options(config, w.run),
    log:
        f"{R}/logs/dpg_sample_{{run}}.log",
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=2000),
    shell:
        "imagenet-t2i dpg sample --config {CFG} --model {input.model} --prompts {input.prompts} "
        "--uncond {input.uncond} --embeddings {input.embeddings} --out {output} {params.options} > {log} 2>&1"


if config["eval"]["perception"] == "tiny":

    rule dpg_answer:
        """Perception: yes/no answers to every question on every cell."""
        input:
            grids=f"{R}/eval/{{run}}/dpg/grids",
            questions=f"{R}/eval/dpg/questions.csv",
        output:
            f"{R}/eval/{{run}}/dpg/answers.jsonl",
        params:
            code=CODE,
        log:
            f"{R}/logs/dpg_answer_{{run}}.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=2000),
        shell:
            "imagenet-t2i dpg answer --config {CFG} --grids {input.grids} --questions {input.questions} "
            "--out {output} > {log} 2>&1"

else:

    rule dpg_answer:
        """Perception, official: ModelScope mPLUG large VQA on every cell in envs/dpg.yaml (untested here)."""
        input:
            grids=f"{R}/eval/{{run}}/dpg/grids",
            questions=f"{R}/eval/dpg/questions.csv",
            vqa=wf.named_weights(config, config["eval"]["dpg"].get("vqa")),
        output:
            answers=f"{R}/eval/{{run}}/dpg/answers.jsonl",
            meta=f"{R}/eval/{{run}}/dpg/answers.jsonl.meta.json",
        params:
            code=CODE,
            script=f"{workflow.basedir}/src/imagenet_t2i/evaluation/dpg_official.py",
            model=wf.option("--model", wf.weights_location(config, config["eval"]["dpg"].get("vqa"))),
            resolution=config["source"]["resolution"],
        conda:
            "../../envs/dpg.yaml"
        log:
            f"{R}/logs/dpg_answer_{{run}}.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=16000),
        shell:
            "python {params.script} --grids {input.grids} --questions {input.questions} --out {output.answers} "
            "--resolution {params.resolution} {params.model} --meta {output.meta} > {log} 2>&1"


rule dpg_score:
    """Official DPG-Bench scoring (bug-compatibility flags off)."""
    input:
        questions=f"{R}/eval/dpg/questions.csv",
        answers=f"{R}/eval/{{run}}/dpg/answers.jsonl",
    output:
        f"{R}/eval/{{run}}/dpg/scores.json",
    params:
        code=CODE,
    log:
        f"{R}/logs/dpg_score_{{run}}.log",
    shell:
        "imagenet-t2i dpg score --questions {input.questions} --answers {input.answers} --out {output} > {log} 2>&1"


if config["eval"].get("fid"):

    rule fd_reference:
        """Paper scale: Inception / DINOv2 / CLIP statistics of the val images (resize + centre crop), once."""
        input:
            images=f"{R}/data/val",
            weights=wf.fid_weights(config),
        output:
            directory(f"{R}/eval/fd_reference"),
        params:
            code=CODE,
            fid=config["eval"]["fid"],
        log:
            f"{R}/logs/fd_reference.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=16000),
        shell:
            "imagenet-t2i fd reference --config {CFG} --images {input.images} --out {output} > {log} 2>&1"

    rule fd:
        """Paper scale: FID, FD-DINOv2, FD-CLIP, IS, PRDC and CLIPScore of one sample per val caption (streamed)."""
        input:
            model=lambda w: wf.model_dir(config, w.run, w.ckpt),
            vae=wf.weights_inputs(config, "autoencoder"),
            captions=lambda w: f"{R}/captions/val_{wf.run_captions(config, w.run)}.jsonl",
            reference=f"{R}/eval/fd_reference",
            uncond=lambda w: wf.run_uncond(config, w.run),
            embeddings=lambda w: wf.embeddings_path(config, f"val_{wf.run_captions(config, w.run)}"),
        output:
            f"{R}/eval/{{run}}/fd/{{ckpt}}.json",
        params:
            code=CODE,
            fid=config["eval"]["fid"],
            sample=config["sample"],
            options=lambda w: wf.sampling_options(config, w.run),
        log:
            f"{R}/logs/fd_{{run}}_{{ckpt}}.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=16000),
        shell:
            "imagenet-t2i fd score --config {CFG} --model {input.model} --captions {input.captions} "
            "--reference {input.reference} --uncond {input.uncond} --embeddings {input.embeddings} "
            "--out {output} {params.options} > {log} 2>&1"

else:

    rule feature_net:
        """The tiny world's FD feature network, trained once on the train split (Inception's role)."""
        input:
            train=f"{R}/data/train",
            val=f"{R}/data/val",
        output:
            directory(f"{R}/eval/feature_net"),
        params:
            code=CODE,
            fd=config["eval"]["fd"],
        log:
            f"{R}/logs/feature_net.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=2000),
        shell:
            "imagenet-t2i fd train-net --config {CFG} --train {input.train} --val {input.val} --out {output} > {log} 2>&1"


    rule fd:
        """FD, precision/recall/density/coverage of one checkpoint's samples of val captions vs the val images."""
        input:
            model=lambda w: wf.model_dir(config, w.run, w.ckpt),
            vae=wf.weights_inputs(config, "autoencoder"),
            captions=lambda w: f"{R}/captions/val_{wf.run_captions(config, w.run)}.jsonl",
            reference=f"{R}/data/val",
            net=f"{R}/eval/feature_net",
            uncond=lambda w: wf.run_uncond(config, w.run),
            embeddings=lambda w: wf.embeddings_path(config, f"val_{wf.run_captions(config, w.run)}"),
        output:
            f"{R}/eval/{{run}}/fd/{{ckpt}}.json",
        params:
            code=CODE,
            fd=config["eval"]["fd"],
            sample=config["sample"],
            options=lambda w: wf.sampling_options(config, w.run),
        log:
            f"{R}/logs/fd_{{run}}_{{ckpt}}.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=2000),
        shell:
            "imagenet-t2i fd score --config {CFG} --model {input.model} --captions {input.captions} "
            "--reference {input.reference} --net {input.net} --uncond {input.uncond} --embeddings {input.embeddings} "
            "--out {output} {params.options} > {log} 2>&1"


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
        code=CODE,
        sample=config["sample"],
        eval=config["eval"]["steps"],
        probe=config["eval"]["colour_probe"],
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
        code=CODE,
        denoise=config["eval"]["denoise"],
    log:
        f"{R}/logs/denoise_profile_{{run}}.log",
    threads: wf.stage_threads(config, "gpu")
    resources:
        **wf.stage_resources(config, "gpu", mem_mb=2000),
    shell:
        "imagenet-t2i denoise-profile --config {CFG} --model {input.model} --shards {input.shards} "
        "--out {output} > {log} 2>&1"
