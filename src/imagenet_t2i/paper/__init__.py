"""The paper stage: tables (CSV + Markdown + LaTeX) and figures (PNG + PDF) beside the paper's reported values."""
from imagenet_t2i.paper.figures import figure_overfit, figure_qual
from imagenet_t2i.paper.reference import NOT_REPORTED, load_reference, reported
from imagenet_t2i.paper.tables import build_table

__all__ = ["NOT_REPORTED", "build_table", "figure_overfit", "figure_qual", "load_reference", "reported"]
