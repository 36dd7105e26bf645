# FID and friends: FD / FID, FD-DINOv2, FD-CLIP, IS, PRDC, CLIPScore (imagenet_t2i.cli.fid, imagenet_t2i.evaluation.fid).

if config["eval"].get("fid"):

    rule fd_reference:
        """Paper scale: Inception / DINOv2 / CLIP statistics of the val images (resize + centre crop), once."""
        input:
            images=f"{R}/data/val",
            weights=wf.fid_weights(config),
        output:
            directory(f"{R}/eval/fd_reference"),
        params:
            code=wf.code(config, "fd reference", heavy=True),
            fid=wf.output_settings(config["eval"]["fid"]),
            resize=config["source"].get("resize", "bicubic"),
        log:
            f"{R}/logs/fd_reference.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=16000),
        shell:
            "imagenet-t2i fd reference --config {CFG} --images {input.images} --out {output} > {log} 2>&1"

    rule fd_sample:
        """Paper scale: one chunk of the samples (one per val caption), kept as their features; a preempted or
        failed chunk is sampled again alone (eval.fid.chunks)."""
        input:
            model=lambda w: wf.model_dir(config, w.run, w.ckpt),
            vae=wf.weights_inputs(config, "autoencoder"),
            captions=lambda w: f"{R}/captions/val_{wf.run_captions(config, w.run)}.jsonl",
            weights=wf.fid_weights(config),
            uncond=lambda w: wf.run_uncond(config, w.run),
            embeddings=lambda w: wf.embeddings_path(config, f"val_{wf.run_captions(config, w.run)}"),
        output:
            f"{R}/eval/{{run}}/fd/{{ckpt}}.chunks/{{chunk}}.npz",
        params:
            code=wf.code(config, "fd sample", heavy=True),
            fid=wf.output_settings(config["eval"]["fid"]),
            sample=wf.output_settings(config["sample"]),
            options=lambda w: wf.sampling_options(config, w.run),
        log:
            f"{R}/logs/fd_sample_{{run}}_{{ckpt}}_{{chunk}}.log",
        threads: wf.stage_threads(config, "gpu")
        resources:
            **wf.stage_resources(config, "gpu", mem_mb=16000),
        shell:
            "imagenet-t2i fd sample --config {CFG} --model {input.model} --captions {input.captions} "
            "--uncond {input.uncond} --embeddings {input.embeddings} --chunk {wildcards.chunk} --out {output} "
            "{params.options} > {log} 2>&1"


    rule fd:
        """Paper scale: FID, FD-DINOv2, FD-CLIP, IS, PRDC and CLIPScore from the chunks' features (CPU)."""
        input:
            features=lambda w: wf.fid_chunk_files(config, f"{R}/eval/{w.run}/fd/{w.ckpt}.chunks"),
            reference=f"{R}/eval/fd_reference",
        output:
            f"{R}/eval/{{run}}/fd/{{ckpt}}.json",
        params:
            code=wf.code(config, "fd merge"),
            fid=wf.output_settings(config["eval"]["fid"]),
        log:
            f"{R}/logs/fd_{{run}}_{{ckpt}}.log",
        threads: wf.stage_threads(config, "cpu")
        resources:
            **wf.stage_resources(config, "cpu", mem_mb=16000),
        shell:
            "imagenet-t2i fd merge --config {CFG} --features {input.features} --reference {input.reference} "
            "--out {output} > {log} 2>&1"

else:

    rule feature_net:
        """The tiny world's FD feature network, trained once on the train split (Inception's role)."""
        input:
            train=f"{R}/data/train",
            val=f"{R}/data/val",
        output:
            directory(f"{R}/eval/feature_net"),
        params:
            code=wf.code(config, "fd train-net"),
            fd=wf.output_settings(config["eval"]["fd"]),
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
            code=wf.code(config, "fd score", heavy=True),
            fd=wf.output_settings(config["eval"]["fd"]),
            sample=wf.output_settings(config["sample"]),
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
