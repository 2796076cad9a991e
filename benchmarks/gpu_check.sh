#!/usr/bin/env bash
# The CUDA path on one GPU (under 8 minutes on an H100-class GPU, no network): installs the
# project from this checkout into a virtual environment that sees the machine's own CUDA torch,
# then runs benchmarks/gpu_check.py (the bfloat16-autocast loop, ESD LoRA steps at SD-1.5's
# size and at SDXL base size (1024 px) against a bare forward+backward, sampling throughput
# against the UNet's forwards, peak GPU memory per step, a 4-trial Tune sweep at tune.gpus_per_trial=0.25) and prints the ratios.
#
#   bash benchmarks/gpu_check.sh            # PYTHON=/path/to/python to start from another one
#
# Without a GPU it stops at once with one line and exit code 3. Nothing else depends on it.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-python3}"
VENV="${GPU_CHECK_VENV:-$REPO/.venv-gpu-check}"

fail() { local code="$1"; shift; echo "gpu_check: $*" >&2; exit "$code"; }

command -v "$PY" >/dev/null 2>&1 || fail 3 "no Python interpreter '$PY'; set PYTHON=/path/to/python"
# the machine's torch decides: a CUDA build that sees a GPU, or nothing to check here
gpu="$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo none)"
if [ "$gpu" = "none" ]; then
  fail 3 "torch is not importable by $PY; install a CUDA build of torch or set PYTHON=/path/to/python"
elif [ "$gpu" != "1" ]; then
  fail 3 "no CUDA GPU visible to $PY's torch (torch.cuda.is_available() is false); run it on a machine with one"
fi

# $PY inside a virtual environment: install into it; else a virtual environment over the
# system's packages. Either way the machine's CUDA torch is used as it is, never replaced, and
# this checkout is installed editable without touching dependencies (no network needed).
if [ "$("$PY" -c 'import sys; print(int(sys.prefix != sys.base_prefix))')" = "1" ]; then
  RUN="$PY"
else
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv --system-site-packages "$VENV" || fail 1 "python -m venv failed (install python3-venv)"
  fi
  RUN="$VENV/bin/python"
fi
if ! "$RUN" -m pip install --quiet --no-deps --no-build-isolation --no-index -e "$REPO" >/dev/null 2>&1; then
  echo "gpu_check: pip install -e $REPO failed; running from the checkout (PYTHONPATH)" >&2
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
missing="$("$RUN" - <<'PY'
import importlib.util
mods = ["diffusers", "transformers", "peft", "safetensors", "ray", "mlflow", "typer", "rich",
        "yaml", "optuna", "gymnasium", "sklearn", "mlxtend", "scipy", "matplotlib"]
print(" ".join(m for m in mods if importlib.util.find_spec(m) is None))
PY
)"
[ -z "$missing" ] || fail 1 "missing packages for $RUN: $missing (pip install them, without torch)"

exec "$RUN" "$REPO/benchmarks/gpu_check.py"
