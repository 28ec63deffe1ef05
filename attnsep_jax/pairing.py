"""Paired comparison of two separators on the same tracks.

Scores of music separation vary far more between songs than between
separators, so two separators are compared per song: the mean of the paired
per-track differences, a percentile-bootstrap interval over tracks, and how
many tracks gained.  Shared by the ablation report, ``attnsep compare`` and
the quality benchmark.
"""

from __future__ import annotations

import numpy as np

from attnsep_jax import SOURCES


def paired_bootstrap(differences: np.ndarray, rounds: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean of paired per-track differences."""
  if len(differences) < 2:
    return float("nan"), float("nan")
  rng = np.random.default_rng(seed)
  picks = rng.integers(0, len(differences), size=(rounds, len(differences)))
  means = differences[picks].mean(axis=1)
  tail = (1.0 - level) / 2
  return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def per_track_average(seed_results: list[dict], metric: str) -> dict[str, np.ndarray]:
  """track -> (sources,) SDR averaged over seeds (tracks present in every seed)."""
  tracks = set.intersection(*(set(r[metric]) for r in seed_results))
  return {t: np.mean([[r[metric][t][s] for s in SOURCES] for r in seed_results], axis=0)
          for t in sorted(tracks)}


def paired_delta(seed_results: list[dict], base_tracks: dict, metric: str) -> dict:
  """Difference to the base over common tracks (mean of the sources, and per
  source), its bootstrap interval, how many tracks gained, and significance."""
  tracks = per_track_average(seed_results, metric)
  common = sorted(set(tracks) & set(base_tracks))
  by_source = np.array([tracks[t] - base_tracks[t] for t in common]).reshape(-1, len(SOURCES))
  diffs = by_source.mean(axis=1)                                    # (tracks,)
  low, high = paired_bootstrap(diffs)
  return {
      "delta_vs_base": float(diffs.mean()) if len(diffs) else None,
      "delta_ci95": [low, high],
      "delta_by_source": dict(zip(SOURCES, by_source.mean(axis=0).tolist()))
                         if len(diffs) else None,
      "tracks_better": int((diffs > 0).sum()),
      "tracks_compared": len(diffs),
      # Below the table's 0.01 dB resolution a "significant" flag would only
      # mark float noise between (near-)identical models.
      "significant": bool(len(diffs) > 1 and (low > 0 or high < 0)
                          and abs(diffs.mean()) >= 0.01),
  }


def delta_text(delta: dict) -> str:
  """``paired_delta``'s mean difference and interval as "+0.12 [-0.03, +0.27]"."""
  low, high = delta["delta_ci95"]
  return f"{delta['delta_vs_base']:+.2f} [{low:+.2f}, {high:+.2f}]"
