"""The paper stage: tables (CSV + Markdown + LaTeX, `tables`) and figures (PNG + PDF, `figures`) beside the paper's
reported values (`reference`). Nothing is imported here: the workflow reads `tables.score_file` at planning time
without matplotlib."""
