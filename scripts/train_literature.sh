#!/usr/bin/env bash
# The CPU-budget training runs behind the shipped literature weights (models/*.md say
# which figures came from which run). One core each: `taskset -c 1 scripts/train_literature.sh`.
# Re-running resumes every unfinished run from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
VIDCOLOR=${VIDCOLOR:-.venv/bin/vidcolor}
run() {  # model steps batch crop
    "$VIDCOLOR" train data/train --model "$1" --out "runs/$1" --steps "$2" --batch "$3" --crop "$4" \
        --save-every 100 --resume --quiet
}
run iizuka2016 700 16 96
run koalarization 700 16 96
run larsson2016 700 16 96
run larsson2016-hc 700 16 96
run semantic_unet 500 16 64
run cheng2015 300 8 64
