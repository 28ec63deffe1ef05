#!/usr/bin/env bash
# Generates the built-in corpus (if absent) and trains configs/cpu_small.py for
# a few minutes on the CPU, printing the validation SDR as it rises.
#
#   bash scripts/quickstart.sh                  # 5 minutes of training on 2 cores
#   STEPS=4500 MINUTES=60 BATCH=4 WORKDIR=runs/longer bash scripts/quickstart.sh
#
# Environment: CORPUS (default data/synth), WORKDIR (default runs/quickstart),
# STEPS (default 1200: where the learning-rate cosine ends, about what 5
# minutes allow on 2 cores), MINUTES (default 5: training stops there,
# validation not counted), EVAL_EVERY (default 500), BATCH (default 2: in a
# budget of minutes, twice the updates of cpu_small's batch of 4 train
# further; docs/training.md).
# Extra arguments go to train.py (e.g. --config.train.ema_decay=0.9). Running
# it again resumes the workdir.
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS="${CORPUS:-data/synth}"
WORKDIR="${WORKDIR:-runs/quickstart}"
STEPS="${STEPS:-1200}"
MINUTES="${MINUTES:-5}"
EVAL_EVERY="${EVAL_EVERY:-500}"
BATCH="${BATCH:-2}"
PYTHON="${PYTHON:-.venv/bin/python}"

if [ ! -f "$CORPUS/corpus.json" ] && [ ! -d "$CORPUS/train" ]; then
  echo "== generating the built-in corpus in $CORPUS (16 train/valid + 4 test tracks of 20 s)"
  "$PYTHON" -m attnsep_jax.corpus --out "$CORPUS" --tracks 16 --valid-tracks 4 \
    --test-tracks 4 --seconds 20 --seed 0
fi

echo "== training configs/cpu_small.py (batch $BATCH) for $STEPS steps or $MINUTES minutes into $WORKDIR"
"$PYTHON" train.py --config configs/cpu_small.py --workdir "$WORKDIR" \
  --config.data.root="$CORPUS" \
  --config.train.num_steps="$STEPS" \
  --config.data.batch_size="$BATCH" \
  --config.train.time_budget_seconds="$(awk "BEGIN {print 60 * $MINUTES}")" \
  --config.train.eval_every_steps="$EVAL_EVERY" \
  --config.train.checkpoint_every_steps="$EVAL_EVERY" \
  "$@"

echo "== validation SDR (dB, utterance SDR, mean over sources and validation tracks):"
"$PYTHON" - "$WORKDIR" <<'PY'
import sys
from attnsep_jax.train.logs import read_metrics
for e in read_metrics(sys.argv[1]):
  if e["split"] == "valid":
    print(f"  step {e['step']:>6}: {e['sdr']:6.2f}   "
          + "  ".join(f"{k[4:]} {v:5.2f}" for k, v in e.items() if k.startswith("sdr_")))
PY
