#!/usr/bin/env bash
# The evaluation runs behind the model cards and the README's model table, then the cards,
# the table and the contact sheet. Needs `vidcolor data data/` first. About an hour on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CLIPS="data/eval/bikes.mp4 data/eval/carphone_pristine.mp4 data/eval/tree.avi data/eval/vtest.avi"
FRAMES=100
for m in iizuka2016 koalarization larsson2016 larsson2016-hc semantic_unet cheng2015 zhang2016 temporal_unet; do
    extra=""
    [ "$m" = iizuka2016 ] && extra="--stabilize"
    cmd="vidcolor eval $CLIPS --max-frames $FRAMES --model $m $extra --out eval/$m"
    [ -f "eval/$m/vtest.json" ] || $PY -m vidcolor eval $CLIPS --max-frames $FRAMES --model "$m" $extra --out "eval/$m" --quiet
    notes=scripts/card_notes/cpu-budget.md
    [ -f "scripts/card_notes/$m.md" ] && notes=scripts/card_notes/$m.md
    $PY scripts/model_card.py "$m" --eval "eval/$m" --eval-command "$cmd (first $FRAMES frames of each clip)" --notes "$notes"
done
# The default on the pretrained encoder, beside the previous default, on the clips and on the
# held-out tenth of the photos (runs/photos/holdout, made by scripts/train_default.sh).
m=lite_unet
cmd="vidcolor eval $CLIPS --max-frames $FRAMES --model $m --model iizuka2016 --stabilize --out eval/$m"
[ -f "eval/$m/vtest.json" ] || $PY -m vidcolor eval $CLIPS --max-frames $FRAMES --model $m --model iizuka2016 --stabilize --out "eval/$m" --quiet
[ -f "eval/$m-photos/holdout.json" ] || $PY -m vidcolor eval runs/photos/holdout --model $m --model iizuka2016 --out "eval/$m-photos" --quiet
$PY scripts/model_card.py $m --eval "eval/$m" --eval "eval/$m-photos" --compare iizuka2016 --compare iizuka2016+stabilize \
    --eval-command "$cmd (first $FRAMES frames of each clip), and vidcolor eval runs/photos/holdout --model $m --model iizuka2016" \
    --notes scripts/card_notes/$m.md
# The temporal model on the default's network, beside the default, plain and stabilized.
m=temporal_lite
cmd="vidcolor eval $CLIPS --max-frames $FRAMES --model $m --model lite_unet --stabilize --out eval/$m"
[ -f "eval/$m/vtest.json" ] || $PY -m vidcolor eval $CLIPS --max-frames $FRAMES --model $m --model lite_unet --stabilize --out "eval/$m" --quiet
$PY scripts/model_card.py $m --eval "eval/$m" --compare lite_unet --compare lite_unet+stabilize \
    --eval-command "$cmd (first $FRAMES frames of each clip)" --notes scripts/card_notes/$m.md
$PY -m vidcolor.docs
$PY scripts/contact_sheet.py
