"""Reproducible pipeline for ImageNet-only text-to-image diffusion (arXiv 2502.21318)."""
