localrules:
    train,
    train_from,


rule train:
    """One ablation run, trained by a submitit job (local executor or SLURM); resumable."""
    input:
        lambda w: wf.run_inputs(config, w.run),
    wildcard_constraints:
        run=wf.run_pattern(config, from_parent=False),
    output:
        final=directory(f"{R}/runs/{{run}}/final"),
        log_csv=f"{R}/runs/{{run}}/train.csv",
        checkpoints=[directory(f"{R}/runs/{{run}}/checkpoints/{c}") for c in wf.eval_checkpoint_names(config)],
        provenance=report(f"{R}/runs/{{run}}/provenance.json", caption="../report/run.rst", category="Runs"),
    params:
        code=wf.code(config, "train", heavy=True),
        run=lambda w: wf.run_hash(config, w.run),
        state=f"{R}/state/{{run}}",
    threads: config["train"]["threads"]
    priority: 10  # training first: the many short evaluation jobs then fill both cores
    log:
        f"{R}/logs/train_{{run}}.log",
    resources:
        mem_mb=4000,
    shell:
        "imagenet-t2i train --config {CFG} --run {wildcards.run} --shards {R}/shards "
        "--out {R}/runs/{wildcards.run} --state {params.state} 2>&1 | tee {log}"


use rule train as train_from with:
    # A run started from another's weights (runs.<run>.init_from: the resolution stage, the aesthetic fine-tune): no
    # intermediate checkpoints.
    wildcard_constraints:
        run=wf.run_pattern(config, from_parent=True),
    output:
        final=directory(f"{R}/runs/{{run}}/final"),
        log_csv=f"{R}/runs/{{run}}/train.csv",
        provenance=report(f"{R}/runs/{{run}}/provenance.json", caption="../report/run.rst", category="Runs"),
