#!/usr/bin/env bash
# The one-call GPU check (tools/gpu_check.py) on a machine with torch + CUDA and no registry: installs the wheels of
# tools/gpu_wheels.sh (.whl/, carried there) into /tmp/site, then runs the check. Arguments go to gpu_check.py.
#   bash tools/gpu_check.sh --report "$OUT/gpu_check.md"
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
exec python3 tools/gpu_check.py "$@"
