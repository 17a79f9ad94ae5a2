#!/usr/bin/env bash
# The training run behind the shipped temporal_lite (models/temporal_lite.md says which figures came from it).
# It starts from the shipped lite_unet (models/lite_unet.safetensors), whose per-frame network it keeps frozen,
# and trains the temporal head on shots filmed by a virtual camera over the training photos
# (runs/photos/train, made by scripts/train_default.sh; the held-out tenth stays out). Re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
VIDCOLOR=${VIDCOLOR:-.venv/bin/vidcolor}
STEPS=${STEPS:-550}
"$VIDCOLOR" train runs/photos/train ${EXTRA:-} --model temporal_lite --out runs/temporal_lite --steps "$STEPS" \
    --batch 8 --crop 128 --lr 1e-3 --save-every 50 --resume --quiet
