#!/usr/bin/env bash
# The main job on the built-in data, end to end on a CPU (at most 10 minutes
# on 2 cores): set up, generate the corpus, train configs/cpu_small.py for 5
# minutes (validation SDR printed as it rises), export the model, separate one
# song of the built-in test set, and score the test set with BSS Eval v4.
#
# Environment: CORPUS (data/synth), WORKDIR (runs/quickstart), STEPS (1200),
# MINUTES (5), BATCH (2), EVAL_EVERY (500), EVAL_SECONDS (empty: whole test
# tracks; N: their first N s).
# Extra arguments go to train.py (e.g. --config.optim.learning_rate=2e-3).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export CORPUS="${CORPUS:-data/synth}" WORKDIR="${WORKDIR:-runs/quickstart}"
EVAL_SECONDS="${EVAL_SECONDS:-}"
bash scripts/quickstart.sh "$@"

echo "== exporting the model to $WORKDIR/export"
.venv/bin/attnsep export --checkpoint "$WORKDIR" --out "$WORKDIR/export" --force

SONG_DIR="$(find "$CORPUS/test" -mindepth 1 -maxdepth 1 -type d | sort | head -n 1)"
SONG="$WORKDIR/$(basename "$SONG_DIR").wav"
cp "$SONG_DIR/mixture.wav" "$SONG"
echo "== separating '$SONG'"
.venv/bin/attnsep separate "$SONG" --checkpoint "$WORKDIR/export" --out "$WORKDIR/stems" \
  --accompaniment --force

echo "== scoring the built-in test set with BSS Eval v4 (museval's metric)"
.venv/bin/attnsep evaluate --checkpoint "$WORKDIR/export" --musdb "$CORPUS" --is-wav \
  ${EVAL_SECONDS:+--seconds "$EVAL_SECONDS"} --out "$WORKDIR/museval" --force --quiet

echo
echo "stems:          $WORKDIR/stems/$(basename "$SONG_DIR")/"
echo "museval table:  $WORKDIR/museval/results.md"
echo "training curve: $WORKDIR/curves.png"
