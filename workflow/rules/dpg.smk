# DPG-Bench: benchmark, sampling, perception, official scoring (imagenet_t2i.cli.dpg, imagenet_t2i.evaluation.dpg).
# Light rules run where snakemake runs, also under --executor slurm (seconds of CPU each).
localrules:
    dpg_benchmark,
    dpg_score,


rule dpg_benchmark:
    """DPG-Bench prompts and questions: the official 1,065 and dpg_bench.csv (paper), or the world's (tiny)."""
    input:
        wf.named_weights(config, config["eval"]["dpg"].get("questions")),
    output:
        prompts=f"{R}/eval/dpg/prompts.jsonl",
        questions=f"{R}/eval/dpg/questions.csv",
    params:
        code=wf.code(config, "dpg benchmark"),
        dpg=wf.output_settings(config["eval"]["dpg"]),
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
        code=wf.code(config, "dpg sample", heavy=True),
        sample=wf.output_settings(config["sample"]),
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
            code=wf.code(config, "dpg answer"),
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
            code=wf.script_code(config, "evaluation.dpg.official"),
            script=f"{workflow.basedir}/src/imagenet_t2i/evaluation/dpg/official.py",
            model=wf.option("--model", wf.weights_location(config, config["eval"]["dpg"].get("vqa"))),
            resolution=lambda w: wf.run_resolution(config, w.run),
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
        code=wf.code(config, "dpg score"),
    log:
        f"{R}/logs/dpg_score_{{run}}.log",
    shell:
        "imagenet-t2i dpg score --questions {input.questions} --answers {input.answers} --out {output} > {log} 2>&1"
