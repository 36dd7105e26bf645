#!/usr/bin/env bash
# Download, on a machine with registry access, the Python 3.12 wheels `tools/gpu_check.sh` installs on a GPU machine
# that has torch but not the rest of requirements.txt (no registry there). Pins: requirements.txt's. Into .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
pin() { grep -i "^$1==" requirements.txt; }
PACKAGES=(transformers tokenizers huggingface_hub hf-xet httpx2 httpcore2 h11 click typer regex diffusers
          importlib_metadata zipp webdataset braceexpand submitit cloudpickle jsonschema jsonschema-specifications
          referencing rpds-py attrs accelerate safetensors)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
mkdir -p .whl
for name in "${PACKAGES[@]}"; do
  spec=$(pin "$name") || { echo "tools/gpu_wheels.sh: $name is not pinned in requirements.txt" >&2; exit 1; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d .whl "$spec"
done
du -sh .whl
