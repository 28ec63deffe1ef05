"""BSS Eval v4 scoring, SiSEC aggregation, reference rows and tables.

Per track, BSS Eval v4 gives SDR/SIR/ISR/SAR per source on 1 s windows
(``attnsep_jax.bsseval``, museval's numbers in JAX, or museval itself); the
track's score is the median over its windows and the data set's the median
over tracks (the SiSEC 2018 convention used by every published MUSDB18
number), with the mean over tracks reported beside it.  Either backend
writes museval's own per-track JSON.  Two reference "methods" are scored on
the same data: the mixture as every source's estimate (the floor) and the
oracle ideal ratio mask (a ceiling for masking methods).
"""

from __future__ import annotations

import json
import os

import numpy as np

from attnsep_jax import SOURCES

METRICS = ("SDR", "SIR", "ISR", "SAR")
# musdb's target order; BSS Eval v4 projects on all references, so the order
# does not change the numbers, but matching musdb keeps them bit-identical.
MUSDB_TARGETS = ("vocals", "drums", "bass", "other")
REFERENCE_METHODS = ("mixture", "oracle_irm")

# MUSDB18 test SDR (dB), median over frames and tracks, as each model's paper
# reports it (docs/inference.md).
PUBLISHED_SDR = [
    ("Wave-U-Net", 3.25, 4.22, 3.21, 2.25, 3.23),
    ("Open-Unmix (UMX)", 6.32, 5.73, 5.23, 4.02, 5.33),
    ("Conv-TasNet", 6.81, 6.08, 5.66, 4.37, 5.73),
    ("D3Net", 7.24, 7.01, 5.25, 4.53, 6.01),
    ("Demucs v2", 6.84, 6.86, 7.01, 4.42, 6.28),
    ("Hybrid Demucs (v3)", 8.13, 8.24, 8.76, 5.59, 7.68),
    ("BSRNN", 10.01, 9.01, 7.22, 6.70, 8.24),
]  # name, vocals, drums, bass, other, average


BACKENDS = ("jax", "museval")


def bss_eval_track(references: np.ndarray, estimates: np.ndarray, window_samples: int,
                   backend: str = "jax"):
  """BSS Eval v4 per window: (SDR, ISR, SIR, SAR), each (sources, windows).

  Args:
    references: (sources, time, channels) true stems.
    estimates: (sources, time, channels) estimates.
    window_samples: window and hop length.
    backend: "jax" (attnsep_jax.bsseval) or "museval" (the reference).
  """
  if backend == "jax":
    from attnsep_jax.bsseval import bss_eval_v4
    return tuple(bss_eval_v4(references, estimates, window_samples, window_samples))
  if backend == "museval":
    from attnsep_jax.bsseval.check import museval_scores
    return tuple(museval_scores(references, estimates, window_samples, window_samples))
  raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def score_track(name: str, references: np.ndarray, estimates: np.ndarray,
                sample_rate: int, window_seconds: float = 1.0, backend: str = "jax") -> dict:
  """museval's per-track JSON for stems ``(sources, time, channels)`` in SOURCES order.

  Args:
    name: track name (the JSON's and museval's track_name).
    references: (sources, time, channels) true stems, SOURCES order.
    estimates: (sources, time, channels) estimates, SOURCES order.
    sample_rate: in Hz.
    window_seconds: window and hop, in seconds.
    backend: "jax" (attnsep_jax.bsseval) or "museval"; same JSON either way.
  """
  import museval

  order = [SOURCES.index(t) for t in MUSDB_TARGETS]
  sdr, isr, sir, sar = bss_eval_track(
      np.stack([references[i] for i in order]), np.stack([estimates[i] for i in order]),
      int(window_seconds * sample_rate), backend)
  store = museval.TrackStore(win=window_seconds, hop=window_seconds, track_name=name)
  for k, target in enumerate(MUSDB_TARGETS):
    store.add_target(target_name=target, values={
        "SDR": sdr[k].tolist(), "SIR": sir[k].tolist(),
        "ISR": isr[k].tolist(), "SAR": sar[k].tolist()})
  return json.loads(store.json)


def track_medians(track_json: dict) -> dict:
  """{target: {metric: median over the track's windows}} (NaN windows ignored)."""
  medians = {}
  for target in track_json["targets"]:
    frames = target["frames"]
    medians[target["name"]] = {
        m: float(np.nanmedian([f["metrics"][m] for f in frames])) if frames else float("nan")
        for m in METRICS}
  return medians


def aggregate(track_jsons: list[dict]) -> dict:
  """SiSEC aggregate: {"median"|"mean": {target: {metric: value}}} over tracks."""
  per_track = [track_medians(t) for t in track_jsons]
  result = {"median": {}, "mean": {}, "tracks": len(per_track)}
  for target in SOURCES:
    values = {m: [t[target][m] for t in per_track if target in t] for m in METRICS}
    result["median"][target] = {m: float(np.nanmedian(v)) for m, v in values.items()}
    result["mean"][target] = {m: float(np.nanmean(v)) for m, v in values.items()}
  return result


def oracle_irm(mixture: np.ndarray, sources: np.ndarray, power: float = 2.0,
               fft_size: int = 4096, hop: int = 1024) -> np.ndarray:
  """Ideal ratio mask estimates: (time, channels), (S, time, channels) -> (S, time, channels).

  The mask of a source is |S_j|^p / sum_k |S_k|^p on the STFT (p = 2: the
  Wiener-like "IRM2" oracle of SiSEC 2018), applied to the mixture's STFT.
  """
  from scipy.signal import istft, stft
  length = mixture.shape[0]
  stft_args = dict(nperseg=fft_size, noverlap=fft_size - hop)
  _, _, mix = stft(mixture.T, **stft_args)                    # (C, F, frames)
  _, _, src = stft(np.transpose(sources, (0, 2, 1)), **stft_args)  # (S, C, F, frames)
  magnitude = np.abs(src) ** power
  mask = magnitude / (magnitude.sum(axis=0, keepdims=True) + 1e-10)
  _, estimates = istft(mask * mix[None], **stft_args)           # (S, C, time')
  estimates = estimates[..., :length]
  if estimates.shape[-1] < length:
    estimates = np.pad(estimates, ((0, 0), (0, 0), (0, length - estimates.shape[-1])))
  return np.transpose(estimates, (0, 2, 1)).astype(np.float32)


def write_json(path: str, payload) -> None:
  """Atomic JSON write: a killed run never leaves a half-written score."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=2)
  os.replace(tmp, path)


def score_and_write(path: str, name: str, references: np.ndarray, estimates: np.ndarray,
                    sample_rate: int, backend: str = "jax") -> str:
  """Scores one track of one method and writes its JSON (a worker-process entry)."""
  write_json(path, score_track(name, references, estimates, sample_rate, backend=backend))
  return path


def _row(label: str, values: dict) -> str:
  cells = [values[t]["SDR"] for t in ("vocals", "drums", "bass", "other")]
  return (f"| {label} | " + " | ".join(f"{v:.2f}" for v in cells)
          + f" | {np.mean(cells):.2f} |")


def markdown_table(results: dict, data_label: str, is_musdb: bool,
                   statistic: str = "median") -> str:
  """Model and reference rows, then the published MUSDB18 rows.

  Args:
    results: method -> aggregate(...) output.
    data_label: what was evaluated (shown in the heading).
    is_musdb: whether the data is MUSDB18's test set (else the published rows
      are labelled as figures on a different data set).
    statistic: "median" (SiSEC) or "mean" over tracks.
  """
  lines = [f"SDR (dB), BSS Eval v4, {statistic} over 1 s frames then {statistic} "
           f"over tracks; {data_label}.", "",
           "| method | vocals | drums | bass | other | avg |", "|---|---|---|---|---|---|"]
  labels = {"model": "**this model**", "mixture": "mixture (reference)",
            "oracle_irm": "oracle IRM (upper bound)"}
  for method in ("model",) + REFERENCE_METHODS:
    if method in results:
      lines.append(_row(labels[method], results[method][statistic]))
  suffix = "" if is_musdb else " — published, MUSDB18 test, NOT this data"
  for name, vocals, drums, bass, other, avg in PUBLISHED_SDR:
    lines.append(f"| {name}{suffix} | {vocals:.2f} | {drums:.2f} | {bass:.2f} | "
                 f"{other:.2f} | {avg:.2f} |")
  if not is_musdb:
    lines += ["", "The published rows are MUSDB18 test-set figures from each model's paper; "
              "they are shown for scale only and are not comparable with numbers on "
              "this data."]
  return "\n".join(lines)
