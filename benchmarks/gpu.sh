#!/usr/bin/env bash
# Every GPU check of vidcolor in one run, under five minutes on one GPU (an H100):
#   1. fp16/bf16 vs fp32 chroma of every model with shipped weights (+ the default)
#   2. the out-of-memory retry of Colorizer._network on real CUDA
#   3. the VapourSynth filter on CUDA vs CPU, and in reverse frame order
#   4. 1080p fps (in memory, on the device, end to end) of the default model in
#      fp16/bf16 and of ddcolor-large (synthetic weights) in fp16
# Prints figures, ratios and a one-line summary per check; writes JSON to
# $OUT/gpu.json (benchmarks/results/gpu.json when $OUT is unset). Installs nothing.
# Arguments go to benchmarks/gpu_checks.py, e.g. `benchmarks/gpu.sh --device cpu --quick`
# for a CPU smoke test, `--only oom,vs` for some checks. Exit status 1: a check failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -n "${PYTHON:-}" ]]; then
  py=$PYTHON
elif [[ -x .venv/bin/python ]]; then
  py=.venv/bin/python
else
  py=$(command -v python3 || command -v python)
fi
# The checks stop starting new items after --budget (270 s); the hard stop is 295 s.
exec timeout --kill-after=5 295 "$py" benchmarks/gpu_checks.py "$@"
