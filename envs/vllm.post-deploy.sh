#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) inside the new envs/vllm.yaml environment: this package without its dependencies
# (its torch==2.13.0 CPU pin would fight vLLM's CUDA torch). Snakemake runs it from its working directory, the
# repository root as the README runs it; IMAGENET_T2I_REPO overrides. UNTESTED here: no conda, no GPU.
set -euo pipefail
pip install --no-deps -e "${IMAGENET_T2I_REPO:-$PWD}"
