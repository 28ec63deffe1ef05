"""Separate-then-score: BSS Eval v4, SiSEC aggregation, reference rows and tables.

``separate_and_score`` is the one path that separates tracks (with
``attnsep_jax.inference``, or a reference method) and scores them: the
evaluation command, validation during training and the ablation study all
use it.  Per track, BSS Eval v4 gives SDR/SIR/ISR/SAR per source on 1 s
windows (``attnsep_jax.bsseval``, museval's numbers in JAX, or museval
itself); the track's score is the median over its windows and the data set's
the median over tracks (the SiSEC 2018 convention used by every published
MUSDB18 number), with the mean over tracks reported beside it.  Either
backend gives museval's own per-track JSON.  Two reference "methods" are
scored on the same data: the mixture as every source's estimate (the floor)
and the oracle ideal ratio mask (a ceiling for masking methods).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import json
import multiprocessing
import warnings
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from attnsep_jax import SOURCES, masking
from attnsep_jax.tables import markdown_table

METRICS = ("SDR", "SIR", "ISR", "SAR")
# musdb's target order; BSS Eval v4 projects on all references, so the order
# does not change the numbers, but matching musdb keeps them bit-identical.
MUSDB_TARGETS = ("vocals", "drums", "bass", "other")
REFERENCE_METHODS = ("mixture", "oracle_irm")
METHODS = ("model",) + REFERENCE_METHODS

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


def bss_scores(references: np.ndarray, estimates: np.ndarray, sample_rate: int,
               window_seconds: float = 1.0, backend: str = "jax"):
  """BSS Eval v4 per window, as ``bsseval.BSSEvalScores`` in the stems' order.

  Four stems are taken in SOURCES order and scored in musdb's order, so that
  the numbers equal museval's on the musdb track bit for bit.

  Args:
    references: (sources, time, channels) true stems.
    estimates: (sources, time, channels) estimates.
    sample_rate: in Hz.
    window_seconds: window and hop, in seconds.
    backend: "jax" (attnsep_jax.bsseval) or "museval".
  Raises:
    ValueError: BSS Eval is undefined (a silent stem) or the stems are unusable.
  """
  from attnsep_jax.bsseval import BSSEvalScores
  window = int(window_seconds * sample_rate)
  if len(references) != len(SOURCES):
    return BSSEvalScores(*bss_eval_track(references, estimates, window, backend))
  order = [SOURCES.index(t) for t in MUSDB_TARGETS]
  scores = bss_eval_track(references[order], estimates[order], window, backend)
  back = np.argsort(order)
  return BSSEvalScores(*(np.asarray(metric)[back] for metric in scores))


def museval_json(name: str, scores, window_seconds: float = 1.0) -> dict:
  """museval's per-track JSON of ``bss_scores`` for four stems in SOURCES order."""
  import museval

  store = museval.TrackStore(win=window_seconds, hop=window_seconds, track_name=name)
  for target in MUSDB_TARGETS:
    k = SOURCES.index(target)
    store.add_target(target_name=target, values={
        "SDR": scores.sdr[k].tolist(), "SIR": scores.sir[k].tolist(),
        "ISR": scores.isr[k].tolist(), "SAR": scores.sar[k].tolist()})
  return json.loads(store.json)


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
  scores = bss_scores(references, estimates, sample_rate, window_seconds, backend)
  return museval_json(name, scores, window_seconds)


@contextlib.contextmanager
def undefined_as_nan():
  """Quiets numpy's RuntimeWarning when a NaN-ignoring median or mean meets only NaN.

  BSS Eval leaves a window NaN where a source is silent, so a silent stem (or a
  source undefined on every track) has nothing to reduce; NaN is then the answer.
  """
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    yield


def track_medians(track_json: dict) -> dict:
  """{target: {metric: median over the track's windows}} (NaN windows ignored)."""
  medians = {}
  for target in track_json["targets"]:
    frames = target["frames"]
    with undefined_as_nan():
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
    with undefined_as_nan():
      result["median"][target] = {m: float(np.nanmedian(v)) for m, v in values.items()}
      result["mean"][target] = {m: float(np.nanmean(v)) for m, v in values.items()}
  return result


def oracle_irm(mixture: np.ndarray, sources: np.ndarray, power: float = 2.0,
               fft_size: int = 4096) -> np.ndarray:
  """Ideal ratio mask estimates: (time, channels), (S, time, channels) -> (S, time, channels).

  The mask of a source is |S_j|^p / sum_k |S_k|^p on the STFT (p = 2: the
  Wiener-like "IRM2" oracle of SiSEC 2018), applied to the mixture's STFT.
  """
  return np.asarray(masking.soft_mask(mixture, sources, power, fft_size))


# ---------------------------------------------------------------------------
# The one separate-then-score path.
# ---------------------------------------------------------------------------
# (name, mixture (time, channels), references (sources, time, channels))
Track = tuple[str, np.ndarray, np.ndarray]
Metric = Callable[[np.ndarray, np.ndarray], np.ndarray]   # (references, estimates) -> value


@dataclasses.dataclass(frozen=True)
class TrackResult:
  """One track separated by a method, and scored.

  Attributes:
    name: the track's name.
    method: "model", "mixture" or "oracle_irm".
    mixture: (time, channels) float32.
    references: (sources, time, channels) float32 true stems.
    estimates: (sources, time, channels) float32, the method's.
    bss: BSS Eval v4 per window (``bsseval.BSSEvalScores``, the stems'
      order); None when not asked for or undefined on this track.
    bss_error: why BSS Eval is undefined here (a silent stem), else "".
    metrics: name -> value of each extra metric asked for.
    window_seconds: BSS Eval's window and hop.
  """
  name: str
  method: str
  mixture: np.ndarray
  references: np.ndarray
  estimates: np.ndarray
  bss: object | None = None
  bss_error: str = ""
  metrics: dict = dataclasses.field(default_factory=dict)
  window_seconds: float = 1.0

  def bss_sdr(self) -> np.ndarray:
    """(sources,) SDR, the median over the track's windows (NaN: undefined)."""
    if self.bss is None:
      return np.full(len(self.references), np.nan)
    with undefined_as_nan():
      return np.nanmedian(self.bss.sdr, axis=1)

  def museval_json(self) -> dict:
    """museval's per-track JSON of the BSS Eval scores (four stems)."""
    if self.bss is None:
      raise ValueError(f"{self.name}: no BSS Eval scores ({self.bss_error or 'not asked for'})")
    return museval_json(self.name, self.bss, self.window_seconds)


def estimate_sources(method: str, model, params, mixture: np.ndarray, references: np.ndarray,
                     *, sample_rate: int, inference: Mapping | None = None) -> np.ndarray:
  """(sources, time, channels) estimates of a method: the model's, or a reference's."""
  if method == "model":
    from attnsep_jax.inference import separate
    return separate(model, params, mixture, sample_rate=sample_rate, **dict(inference or {}))
  if method == "mixture":
    return np.broadcast_to(mixture, references.shape).copy()
  if method == "oracle_irm":
    return oracle_irm(mixture, references)
  raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def separate_and_score_track(model, params, name: str, mixture: np.ndarray,
                             references: np.ndarray, *, sample_rate: int,
                             inference: Mapping | None = None, method: str = "model",
                             backend: str = "jax", window_seconds: float = 1.0,
                             metrics: Mapping[str, Metric] | None = None,
                             bss_eval: bool = True) -> TrackResult:
  """One track of ``separate_and_score`` (arguments as there)."""
  mixture = np.asarray(mixture, np.float32)
  references = np.asarray(references, np.float32)
  estimates = estimate_sources(method, model, params, mixture, references,
                               sample_rate=sample_rate, inference=inference)
  values = {key: np.asarray(metric(references, estimates))
            for key, metric in (metrics or {}).items()}
  result = TrackResult(name, method, mixture, references, estimates, metrics=values,
                       window_seconds=window_seconds)
  if not bss_eval:
    return result
  undefined = silent_stems(references, estimates)
  if undefined:
    return dataclasses.replace(result, bss_error=undefined)
  try:
    scores = bss_scores(references, estimates, sample_rate, window_seconds, backend)
  except ValueError as e:
    return dataclasses.replace(result, bss_error=str(e))
  return dataclasses.replace(result, bss=scores)


def silent_stems(references: np.ndarray, estimates: np.ndarray) -> str:
  """Why BSS Eval is undefined on a track (a stem silent throughout, where
  museval raises too), or "" when it is defined."""
  names = SOURCES if len(references) == len(SOURCES) else range(len(references))
  problems = []
  for kind, stems in (("reference", references), ("estimate", estimates)):
    silent = [str(n) for n, stem in zip(names, stems) if not np.any(stem.sum(axis=-1))]
    if silent:
      problems.append(f"silent {kind} stem(s) {', '.join(silent)}")
  return "; ".join(problems) + " (BSS Eval is undefined)" if problems else ""


def separate_and_score(model, params, tracks: Iterable[Track], *, sample_rate: int,
                       inference: Mapping | None = None, method: str = "model",
                       backend: str = "jax", window_seconds: float = 1.0,
                       metrics: Mapping[str, Metric] | None = None, bss_eval: bool = True,
                       workers: int = 1) -> Iterator[TrackResult]:
  """Separates each track and scores it; yields TrackResults in the tracks' order.

  Args:
    model: the network (unused by the reference methods).
    params: its parameters (the EMA ones when the run kept an average).
    tracks: (name, mixture (time, channels), references (sources, time,
      channels)) tuples, as ``data.loader.validation_tracks`` yields them.
    sample_rate: the tracks' rate in Hz (the model's).
    inference: ``inference.separate`` settings (``config.inference``).
    method: "model", or a reference: "mixture", "oracle_irm".
    backend: BSS Eval v4 by "jax" (attnsep_jax.bsseval) or "museval".
    window_seconds: BSS Eval's window and hop.
    metrics: extra per-track metrics, name -> ``metric(references,
      estimates)``, e.g. ``{"usdr": metrics.utterance_sdr}``.
    bss_eval: compute BSS Eval v4 (False: estimates and metrics only).
    workers: with the museval backend, score in this many spawned processes
      while the next tracks are separated (the JAX backend uses every core
      in this process already).
  """
  settings = dict(sample_rate=sample_rate, inference=inference, method=method,
                  backend=backend, window_seconds=window_seconds, metrics=metrics)
  if not (bss_eval and backend == "museval" and workers > 1):
    for name, mixture, references in tracks:
      yield separate_and_score_track(model, params, name, mixture, references,
                                     bss_eval=bss_eval, **settings)
    return
  context = multiprocessing.get_context("spawn")   # JAX's threads make fork unsafe
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
    pending = collections.deque()
    for name, mixture, references in tracks:
      result = separate_and_score_track(model, params, name, mixture, references,
                                        bss_eval=False, **settings)
      pending.append((result, pool.submit(bss_scores, result.references, result.estimates,
                                          sample_rate, window_seconds, backend)))
      if len(pending) > workers:   # at most one track waiting per worker
        yield _with_scores(*pending.popleft())
    while pending:
      yield _with_scores(*pending.popleft())


def _with_scores(result: TrackResult, scores: concurrent.futures.Future) -> TrackResult:
  try:
    return dataclasses.replace(result, bss=scores.result())
  except ValueError as e:
    return dataclasses.replace(result, bss_error=str(e))


def _sdr_cells(label: str, sdr_by_target: dict, average: float | None = None) -> list[str]:
  """A row: the four targets in SiSEC's order and their average (the published one
  when given: papers round their own)."""
  cells = [sdr_by_target[t] for t in ("vocals", "drums", "bass", "other")]
  average = np.mean(cells) if average is None else average
  return [label] + [f"{v:.2f}" for v in cells] + [f"{average:.2f}"]


def results_table(results: dict, data_label: str, is_musdb: bool,
                  statistic: str = "median") -> str:
  """Model and reference rows, then the published MUSDB18 rows.

  Args:
    results: method -> aggregate(...) output.
    data_label: what was evaluated (shown in the heading).
    is_musdb: whether the data is MUSDB18's test set (else the published rows
      are labelled as figures on a different data set).
    statistic: "median" (SiSEC) or "mean" over tracks.
  """
  labels = {"model": "**this model**", "mixture": "mixture (reference)",
            "oracle_irm": "oracle IRM (upper bound)"}
  rows = [_sdr_cells(labels[method], {t: v["SDR"] for t, v in results[method][statistic].items()})
          for method in ("model",) + REFERENCE_METHODS if method in results]
  suffix = "" if is_musdb else " — published, MUSDB18 test, NOT this data"
  rows += [_sdr_cells(name + suffix, dict(vocals=vocals, drums=drums, bass=bass, other=other),
                      average) for name, vocals, drums, bass, other, average in PUBLISHED_SDR]
  lines = [f"SDR (dB), BSS Eval v4, {statistic} over 1 s frames then {statistic} "
           f"over tracks; {data_label}.", "",
           markdown_table(["method", "vocals", "drums", "bass", "other", "avg"], rows)]
  if not is_musdb:
    lines += ["", "The published rows are MUSDB18 test-set figures from each model's paper; "
              "they are shown for scale only and are not comparable with numbers on "
              "this data."]
  return "\n".join(lines)
