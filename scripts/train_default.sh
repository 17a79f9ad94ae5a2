#!/usr/bin/env bash
# The training run behind the shipped default (models/lite_unet.md says which figures came from it).
# Photos of DATA/train (default data/, built by `vidcolor data data`) are split by a hash of their
# names: one in ten goes to runs/photos/holdout (scored, never trained on), the rest to
# runs/photos/train. Re-running resumes from the last checkpoint; EXTRA folders are trained on too.
set -euo pipefail
cd "$(dirname "$0")/.."
VIDCOLOR=${VIDCOLOR:-.venv/bin/vidcolor}
DATA=${DATA:-data}
STEPS=${STEPS:-3000}
python3 - "$DATA/train" runs/photos <<'PY'
import hashlib, os, pathlib, sys
src, out = pathlib.Path(sys.argv[1]).resolve(), pathlib.Path(sys.argv[2])
for part in ("train", "holdout"):
    (out / part).mkdir(parents=True, exist_ok=True)
for f in sorted(src.iterdir()):
    part = "holdout" if hashlib.sha256(f.name.encode()).digest()[0] % 10 == 0 else "train"
    link = out / part / f.name
    if not link.exists():
        os.symlink(f, link)
PY
"$VIDCOLOR" train runs/photos/train ${EXTRA:-} --model lite_unet --out runs/lite_unet --steps "$STEPS" \
    --batch 16 --crop 144 --lr 1e-3 --freeze-encoder "${FREEZE:-400}" --encoder-lr 0.1 --input-damage 0.3 \
    --save-every 50 --resume --quiet
