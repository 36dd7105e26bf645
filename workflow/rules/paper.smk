localrules:
    table,
    figure_overfit,
    figure_qual,
    figure_denoise,
    figure_bubble,


rule table:
    """One paper table: ours beside the paper's reported values (CSV, Markdown, LaTeX + provenance)."""
    input:
        lambda w: wf.table_inputs(config, w.table),
    output:
        csv=report(f"{R}/tables/{{table}}.csv", caption="../report/table.rst", category="Tables"),
        md=f"{R}/tables/{{table}}.md",
        tex=f"{R}/tables/{{table}}.tex",
        prov=report(f"{R}/tables/{{table}}.csv.prov.json", caption="../report/provenance.rst", category="Provenance"),
    params:
        code=wf.code(config, "table"),
        spec=lambda w: wf.output_settings(config["tables"][w.table]),
    log:
        f"{R}/logs/table_{{table}}.log",
    shell:
        "imagenet-t2i table --config {CFG} --table {wildcards.table} --out {output.csv} > {log} 2>&1"


rule figure_overfit:
    """F-OVERFIT: FD vs training step, TA vs TA+IA."""
    input:
        wf.overfit_inputs(config),
    output:
        png=report(f"{R}/figures/F-OVERFIT.png", caption="../report/figure.rst", category="Figures"),
        pdf=f"{R}/figures/F-OVERFIT.pdf",
        prov=report(f"{R}/figures/F-OVERFIT.png.prov.json", caption="../report/provenance.rst", category="Provenance"),
    params:
        code=wf.code(config, "figure"),
        spec=wf.output_settings(config.get("figures", {}).get("F-OVERFIT")),
    log:
        f"{R}/logs/figure_F-OVERFIT.log",
    shell:
        "imagenet-t2i figure --config {CFG} --figure F-OVERFIT --out {output.png} > {log} 2>&1"


rule figure_qual:
    """F-QUAL (TA vs TA+IA on the same prompts) or F-GALLERY (every run, every grid prompt): sample images."""
    input:
        lambda w: wf.grid_figure_inputs(config, w.grids),
    output:
        png=report(f"{R}/figures/{{grids}}.png", caption="../report/figure.rst", category="Figures"),
        pdf=f"{R}/figures/{{grids}}.pdf",
        prov=report(f"{R}/figures/{{grids}}.png.prov.json", caption="../report/provenance.rst", category="Provenance"),
    wildcard_constraints:
        grids="F-QUAL|F-GALLERY",
    params:
        code=wf.code(config, "figure"),
        spec=lambda w: wf.output_settings(config.get("figures", {}).get(w.grids)),
    log:
        f"{R}/logs/figure_{{grids}}.log",
    shell:
        "imagenet-t2i figure --config {CFG} --figure {wildcards.grids} --out {output.png} > {log} 2>&1"


rule figure_denoise:
    """F-DENOISE, a diagnostic (not a paper figure): x0-prediction MSE vs noise level, per model."""
    input:
        wf.denoise_inputs(config),
    output:
        png=report(f"{R}/figures/F-DENOISE.png", caption="../report/figure.rst", category="Figures"),
        pdf=f"{R}/figures/F-DENOISE.pdf",
        prov=report(f"{R}/figures/F-DENOISE.png.prov.json", caption="../report/provenance.rst", category="Provenance"),
    params:
        code=wf.code(config, "figure"),
        spec=wf.output_settings(config.get("figures", {}).get("F-DENOISE")),
    log:
        f"{R}/logs/figure_F-DENOISE.log",
    shell:
        "imagenet-t2i figure --config {CFG} --figure F-DENOISE --out {output.png} > {log} 2>&1"


rule figure_bubble:
    """F-BUBBLE: GenEval and DPG overall vs parameters, ours beside the published models."""
    input:
        wf.bubble_inputs(config),
        reference=f"{workflow.basedir}/config/reference_values.yaml",
    output:
        png=report(f"{R}/figures/F-BUBBLE.png", caption="../report/figure.rst", category="Figures"),
        pdf=f"{R}/figures/F-BUBBLE.pdf",
        prov=report(f"{R}/figures/F-BUBBLE.png.prov.json", caption="../report/provenance.rst", category="Provenance"),
    params:
        code=wf.code(config, "figure"),
        spec=wf.output_settings(config.get("figures", {}).get("F-BUBBLE")),
    log:
        f"{R}/logs/figure_F-BUBBLE.log",
    shell:
        "imagenet-t2i figure --config {CFG} --figure F-BUBBLE --out {output.png} > {log} 2>&1"
