#!/usr/bin/env bash
# Sets up attnsep-jax on a Debian/Ubuntu machine: ffmpeg (needed by musdb and
# museval at import time) and a virtual environment in .venv with the pinned
# requirements.  Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1))." >&2
  echo "setup: set PYTHON=/path/to/python3.11 and re-run." >&2
  exit 1
fi

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  if command -v apt-get >/dev/null; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "setup: installing ffmpeg with apt-get (musdb and museval need it)"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
  else
    echo "setup: ffmpeg is missing and this is not a Debian/Ubuntu system;" >&2
    echo "setup: install ffmpeg (with ffprobe) with your package manager and re-run." >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
# pip is quick when everything is already satisfied.
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
# tinysoundfont declares pyaudio, needed only for live playback (and unbuildable
# without PortAudio headers), so it is installed without dependencies.
.venv/bin/pip install -q --disable-pip-version-check --no-deps tinysoundfont==0.3.7
# The editable install's build backend is chatty; show its log only on failure.
log="$(mktemp)"
if ! .venv/bin/pip install -q --disable-pip-version-check --no-deps -e . >"$log" 2>&1; then
  cat "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"
echo "setup: ready ($(.venv/bin/python -c 'import jax; print("jax", jax.__version__)'))"
