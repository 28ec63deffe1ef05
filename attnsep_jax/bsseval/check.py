"""Agreement of our BSS Eval v4 with museval's, the reference implementation.

A window agrees when its NaNs are museval's, and each metric is within
TOLERANCE_DB of museval's, except where museval gives more than
ROUND_OFF_DB: such a ratio's denominator is round-off of the projection
(an estimate that is an exact filtered combination of the references), and
museval's own digits there change by tens of dB when the sources are merely
listed in another order; both implementations must then give more than
ROUND_OFF_DB (or both +inf).
"""

from __future__ import annotations

import numpy as np

TOLERANCE_DB = 0.01
ROUND_OFF_DB = 100.0
METRIC_NAMES = ("SDR", "ISR", "SIR", "SAR")


def museval_scores(references, estimates, window_samples: int = 44100,
                   hop_samples: int | None = None):
  """museval.evaluate(..., mode="v4", padding=True) as BSSEvalScores."""
  import museval

  from attnsep_jax.bsseval import BSSEvalScores
  hop_samples = window_samples if hop_samples is None else hop_samples
  return BSSEvalScores(*museval.evaluate(references, estimates, win=window_samples,
                                         hop=hop_samples, mode="v4", padding=True))


def max_differences(ours, theirs) -> dict:
  """{metric: max |ours - museval| in dB} over windows museval puts below ROUND_OFF_DB.

  Args:
    ours: BSSEvalScores (or 4 arrays) of bss_eval_v4.
    theirs: the same from museval_scores.
  """
  result = {}
  for name, a, b in zip(METRIC_NAMES, ours, theirs):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    exact = np.isfinite(a) & np.isfinite(b) & (b <= ROUND_OFF_DB)
    result[name] = float(np.max(np.abs(a - b)[exact])) if exact.any() else 0.0
  return result


def disagreements(ours, theirs) -> list[str]:
  """One line per metric that disagrees with museval (empty: agreement).

  Args:
    ours: BSSEvalScores (or 4 arrays) of bss_eval_v4.
    theirs: the same from museval_scores.
  """
  problems = []
  for name, a, b in zip(METRIC_NAMES, ours, theirs):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
      problems.append(f"{name}: shape {a.shape} vs museval's {b.shape}")
      continue
    if not np.array_equal(np.isnan(a), np.isnan(b)):
      problems.append(f"{name}: NaN in other windows than museval's")
    high = ~np.isnan(b) & (b > ROUND_OFF_DB)
    if not np.all(a[high] > ROUND_OFF_DB):
      problems.append(f"{name}: at most {ROUND_OFF_DB:g} dB where museval is above it")
    if np.any(np.isinf(a) != np.isinf(b)) and not np.all(high[np.isinf(a) != np.isinf(b)]):
      problems.append(f"{name}: infinite in other windows than museval's")
  for name, diff in max_differences(ours, theirs).items():
    if diff > TOLERANCE_DB:
      problems.append(f"{name}: differs from museval by up to {diff:.3g} dB")
  return problems


def cross_check(references, estimates, window_samples: int = 44100) -> tuple[dict, list[str]]:
  """Both implementations on the same stems: (max_differences, disagreements).

  Args:
    references: (sources, time, channels) true stems.
    estimates: (sources, time, channels) estimates.
    window_samples: window and hop length.
  """
  from attnsep_jax.bsseval import bss_eval_v4
  theirs = museval_scores(references, estimates, window_samples, window_samples)
  ours = bss_eval_v4(references, estimates, window_samples, window_samples)
  return max_differences(ours, theirs), disagreements(ours, theirs)
