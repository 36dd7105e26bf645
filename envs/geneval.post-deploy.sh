#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) inside the new envs/geneval.yaml environment: the two steps pip cannot do from the
# environment file (geneval issues #8 and #12). UNTESTED here: no conda, no GPU, no network to the git hosts.
#   1. mmcv-full 1.7.2 with its CUDA ops compiled for Hopper (the prebuilt wheels lack sm_90). FORCE_CUDA=1 builds
#      them on a node that shows no GPU (a login node, where Snakemake deploys environments).
#   2. mmdet 2.27.0 from its git tree, installed editable: the official script finds the Mask2Former config in
#      <mmdet>/../configs/ as GenEval does, so the clone must stay where it is (inside the environment).
set -euo pipefail
SRC="${CONDA_PREFIX:?run inside the conda environment}/src"
mkdir -p "$SRC"
if [ ! -d "$SRC/mmcv" ]; then
  git clone --depth 1 -b v1.7.2 https://github.com/open-mmlab/mmcv.git "$SRC/mmcv"
fi
(cd "$SRC/mmcv" && MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" \
  pip install --no-build-isolation -v -e .)
if [ ! -d "$SRC/mmdetection" ]; then
  git clone --depth 1 -b v2.27.0 https://github.com/open-mmlab/mmdetection.git "$SRC/mmdetection"
fi
(cd "$SRC/mmdetection" && pip install --no-build-isolation -v -e .)
python - <<'PY'
import mmcv, mmdet, os
from mmcv.ops import nms  # the compiled ops
config = os.path.join(os.path.dirname(mmdet.__file__), "..", "configs", "mask2former",
                      "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py")
assert os.path.isfile(config), config
print("mmcv", mmcv.__version__, "mmdet", mmdet.__version__, "config", os.path.realpath(config))
PY
