#!/usr/bin/env bash
# The installed package, as a user gets it: builds the wheel, installs it into
# a clean virtual environment (no system site-packages, no checkout on the
# path) and, from a folder outside the repository, generates a tiny corpus,
# trains configs/tiny.py for two steps, exports, separates one mixture and
# evaluates. Any failing step fails the script.
#
#   bash scripts/wheel_smoke.sh        # KEEP=1 keeps the temporary folder
#
# Configs are files passed by path and are not in the wheel: the smoke copies
# the repository's configs/ beside its outputs, as a user keeps their own.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/attnsep-wheel-smoke.XXXXXX")"
STEP="setup"
trap 'status=$?; [ "$status" = 0 ] || echo "wheel smoke: FAILED at: $STEP" >&2;
      if [ "${KEEP:-0}" = 1 ]; then echo "wheel smoke: kept $TMP" >&2; else rm -rf "$TMP"; fi;
      exit $status' EXIT
step() { STEP="$*"; echo "== wheel smoke: $STEP (at ${SECONDS} s)"; }

step "building the wheel from a copy of the sources"
# A copy, so that no stale build/ of the checkout leaks into the wheel.
mkdir "$TMP/src"
tar -C "$REPO" --exclude=__pycache__ -cf - pyproject.toml README.md attnsep_jax \
  | tar -C "$TMP/src" -xf -
"$REPO/.venv/bin/pip" wheel -q --no-deps -w "$TMP/dist" "$TMP/src"

step "installing it into a clean virtual environment"
"$REPO/.venv/bin/python" -m venv "$TMP/venv"
PY="$TMP/venv/bin/python"
# The wheel's own dependencies, held to the tested pins; then the corpus
# renderer without PyAudio, as docs/data.md says. --no-compile: byte-compiling
# every dependency took most of the smoke's time.
"$PY" -m pip install -q --no-compile -c "$REPO/requirements.txt" "$TMP"/dist/attnsep_jax-*.whl
"$PY" -m pip install -q --no-compile --no-deps "tinysoundfont==0.3.7"

mkdir "$TMP/work"
cd "$TMP/work"
cp -r "$REPO/configs" configs
"$PY" -c 'import sys, attnsep_jax
sys.exit(None if attnsep_jax.__file__.startswith(sys.prefix)
         else f"attnsep_jax comes from {attnsep_jax.__file__}, not the wheel")'

# The commands under test: the installed `attnsep` command family.
ATTNSEP="$TMP/venv/bin/attnsep"
CORPUS=("$ATTNSEP" corpus)
TRAIN=("$ATTNSEP" train)
EXPORT=("$ATTNSEP" export)
SEPARATE=("$ATTNSEP" separate)
EVALUATE=("$ATTNSEP" evaluate)

step "corpus"
"${CORPUS[@]}" --out corpus --tracks 2 --valid-tracks 1 --test-tracks 1 --seconds 3 --workers 1

step "train (configs/tiny.py, 2 steps)"
"${TRAIN[@]}" --config configs/tiny.py --workdir run --config.data.root=corpus \
  --config.train.num_steps=2 --config.train.eval_every_steps=2 \
  --config.train.checkpoint_every_steps=2

step "export"
"${EXPORT[@]}" --checkpoint run --out export

step "separate one mixture"
mixture="$(ls corpus/test/*/mixture.wav | head -n 1)"
"${SEPARATE[@]}" "$mixture" --checkpoint export --out stems --quiet
count="$(find stems -name '*.wav' | wc -l)"
[ "$count" = 4 ] || { echo "wheel smoke: expected 4 stems, found $count" >&2; exit 1; }

step "evaluate"
"${EVALUATE[@]}" --checkpoint export --musdb corpus --is-wav --out scores --no-references --quiet
[ -s scores/results.json ] || { echo "wheel smoke: no scores/results.json" >&2; exit 1; }

STEP="done"
echo "== wheel smoke: passed in ${SECONDS} s"
