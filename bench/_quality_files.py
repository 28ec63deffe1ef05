"""The files a bench.quality run is made of, shared by both virtual environments.

quality.py (our venv) writes a job file per contender run; the run's children
(train.py and _quality_ours.py in our venv, _quality_peer.py in the peers'
venv) read it, and everything they produce comes back as files in the run's
folder, in one format for every contender:

  job.json            what to train and separate (quality.py writes it)
  train_result.json   steps, training seconds, parameters, validation curve
  estimates/<track>/<source>.wav   the separated test tracks (float32 wav)
  separated.json      which test set ``estimates/`` holds

Imports only numpy, soundfile (both venvs have them) and the project's
stdlib-only writer, ``attnsep_jax.files``, which the peers' venv finds because
every child runs as ``python -m bench.<name>`` from the repository root.
"""

from __future__ import annotations

import json
import os

import numpy as np

from attnsep_jax.files import staged_file, write_json  # noqa: F401  (the runs' one writer)

JOB_FILE = "job.json"
TRAIN_RESULT_FILE = "train_result.json"
SEPARATED_FILE = "separated.json"
ESTIMATES_DIR = "estimates"
SDR_DELTA = 1e-7   # attnsep_jax.metrics.SDR_DELTA


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def read_stems(track_dir: str, stems, start: int = 0, frames: int | None = None) -> np.ndarray:
  """``stems`` of a MUSDB18-HQ-layout track folder: float32 ``(len(stems), frames, 2)``.

  Reads past the end are zero-padded (as the project's TrackIndex.read).
  """
  import soundfile as sf
  parts = []
  for stem in stems:
    audio, _ = sf.read(os.path.join(track_dir, f"{stem}.wav"), start=start,
                       frames=-1 if frames is None else frames, dtype="float32", always_2d=True)
    if frames is not None and len(audio) < frames:
      audio = np.pad(audio, ((0, frames - len(audio)), (0, 0)))
    parts.append(audio)
  return np.stack(parts)


def track_frames(track_dir: str) -> int:
  import soundfile as sf
  return sf.info(os.path.join(track_dir, "mixture.wav")).frames


def estimate_path(run_dir: str, track: str, source: str) -> str:
  return os.path.join(run_dir, ESTIMATES_DIR, track, f"{source}.wav")


def write_estimates(run_dir: str, track: str, sources, estimates: np.ndarray,
                    sample_rate: int) -> None:
  """``estimates`` ``(sources, time, channels)`` as one float32 wav per source."""
  import soundfile as sf
  os.makedirs(os.path.dirname(estimate_path(run_dir, track, sources[0])), exist_ok=True)
  for source, audio in zip(sources, estimates):
    with staged_file(estimate_path(run_dir, track, source), f"the {source} estimate of {track}",
                     suffix=".wav") as tmp:
      sf.write(tmp, np.asarray(audio, np.float32), sample_rate, subtype="FLOAT")


def read_estimates(run_dir: str, track: str, sources) -> np.ndarray:
  """``(sources, time, channels)`` float32, as written by ``write_estimates``."""
  import soundfile as sf
  return np.stack([sf.read(estimate_path(run_dir, track, s), dtype="float32", always_2d=True)[0]
                   for s in sources])


def utterance_sdr(references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
  """Per-source SDR in dB of ``(sources, time, channels)`` stems.

  The validation SDR of the project's training loop
  (``attnsep_jax.metrics.utterance_sdr``, the MDX challenge's SDR), in numpy
  because the peers' venv has no JAX.
  """
  references = references.astype(np.float64)
  signal = np.sum(np.square(references), axis=(-2, -1))
  error = np.sum(np.square(references - estimates.astype(np.float64)), axis=(-2, -1))
  return 10.0 * (np.log10(signal + SDR_DELTA) - np.log10(error + SDR_DELTA))


def best_point(curve: list[dict]) -> dict | None:
  """The curve point with the highest validation SDR (the earliest of equals):
  the state every contender is scored with."""
  finite = [p for p in curve if p.get("sdr") is not None and np.isfinite(p["sdr"])]
  return max(finite, key=lambda p: (p["sdr"], -p["step"])) if finite else None


def resolve_options(defaults: dict, given: dict, what: str) -> dict:
  """A recipe's options: its defaults updated with ``given`` (values cast to
  the defaults' types).  Raises ValueError naming an unknown key or bad value."""
  unknown = sorted(set(given) - set(defaults))
  if unknown:
    raise ValueError(f"unknown {what} option(s) {', '.join(unknown)}; "
                     f"known: {', '.join(sorted(defaults))}")
  options = dict(defaults)
  for key, value in given.items():
    try:
      options[key] = type(defaults[key])(value)
    except (TypeError, ValueError):
      raise ValueError(f"{what} option {key}={value!r} is not a "
                       f"{type(defaults[key]).__name__}") from None
  return options
