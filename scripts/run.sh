#!/usr/bin/env bash
# The main job on the built-in data, end to end on a CPU (about 10 minutes on
# 2 cores): set up, generate the corpus, train configs/cpu_small.py for a few
# minutes (validation SDR printed as it rises), export the model, separate one
# song of the built-in test set, and score the test set with museval.
#
# Environment: CORPUS (data/synth), WORKDIR (runs/quickstart), STEPS (400),
# EVAL_SECONDS (10: museval on the first N seconds of each test track).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export CORPUS="${CORPUS:-data/synth}" WORKDIR="${WORKDIR:-runs/quickstart}"
EVAL_SECONDS="${EVAL_SECONDS:-10}"
bash scripts/quickstart.sh

echo "== exporting the model to $WORKDIR/export"
.venv/bin/attnsep-export --checkpoint "$WORKDIR" --out "$WORKDIR/export" --force

SONG_DIR="$(find "$CORPUS/test" -mindepth 1 -maxdepth 1 -type d | sort | head -n 1)"
SONG="$WORKDIR/$(basename "$SONG_DIR").wav"
cp "$SONG_DIR/mixture.wav" "$SONG"
echo "== separating '$SONG'"
.venv/bin/attnsep-separate "$SONG" --checkpoint "$WORKDIR/export" --out "$WORKDIR/stems" \
  --accompaniment --force

echo "== scoring the built-in test set with museval (first $EVAL_SECONDS s of each track)"
.venv/bin/python evaluate.py --checkpoint "$WORKDIR/export" --musdb "$CORPUS" --is-wav \
  --seconds "$EVAL_SECONDS" --out "$WORKDIR/museval" --workers 2 --force

echo
echo "stems:          $WORKDIR/stems/$(basename "$SONG_DIR")/"
echo "museval table:  $WORKDIR/museval/results.md"
echo "training curve: $WORKDIR/curves.png"
