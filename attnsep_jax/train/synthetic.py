"""A deterministic in-memory batch source with the training loader's interface.

For tests, step-time benchmarks and the multi-host check: global batch k is a
pure function of (seed, k), and process p of P yields rows
[p * b / P, (p + 1) * b / P) of it, exactly as the real loader shards.  The
"stems" are tones and noise, so there is something to learn.
"""

from __future__ import annotations

import numpy as np


class SyntheticLoader:
  """Iterates {"mixture": (b, T, 2), "sources": (b, 4, T, 2)} float32 batches.

  Args (constructor):
    batch_size: global batch size (split over processes).
    segment: samples per example.
    seed: selects the sequence of batches.
    process_index: this process's index.
    process_count: number of processes.
    fixed: repeat batch 0 forever (for overfitting tests).
    nan_at: make the mixture of global batch ``nan_at`` NaN (divergence tests).
    fail_at: raise RuntimeError when asked for batch ``fail_at`` (crash tests).
    sample_rate: of the tones, in Hz.
  """

  def __init__(self, batch_size: int = 2, segment: int = 4096, seed: int = 0,
               process_index: int = 0, process_count: int = 1, fixed: bool = False,
               nan_at: int | None = None, fail_at: int | None = None,
               sample_rate: int = 44100):
    if batch_size % process_count:
      raise ValueError(f"batch_size {batch_size} not divisible by {process_count} processes")
    self.batch_size, self.segment, self.seed = batch_size, segment, seed
    self.process_index, self.process_count = process_index, process_count
    self.fixed, self.nan_at, self.fail_at = fixed, nan_at, fail_at
    self.sample_rate = sample_rate
    self.position = 0

  def global_batch(self, k: int) -> dict:
    return make_example_batch(self.batch_size, self.segment,
                              seed=(self.seed, 0 if self.fixed else k),
                              sample_rate=self.sample_rate,
                              nan=self.nan_at is not None and k == self.nan_at)

  def __iter__(self):
    while True:
      if self.fail_at is not None and self.position == self.fail_at:
        raise RuntimeError(f"simulated crash before batch {self.position}")
      batch = self.global_batch(self.position)
      # Count the batch as consumed before handing it out, so that
      # state_dict() after n batches says n.
      self.position += 1
      rows = self.batch_size // self.process_count
      first = self.process_index * rows
      yield {k: v[first:first + rows] for k, v in batch.items()}

  def state_dict(self) -> dict:
    return {"position": self.position}

  def load_state_dict(self, state: dict) -> None:
    self.position = int(state["position"])


def make_example_batch(batch_size: int, segment: int, seed=0, sample_rate: int = 44100,
                       nan: bool = False) -> dict:
  """One batch: drums = decaying clicks, bass/vocals = tones, other = noise."""
  rng = np.random.default_rng(seed)
  t = np.arange(segment, dtype=np.float64) / sample_rate
  sources = np.zeros((batch_size, 4, segment, 2), np.float32)
  for b in range(batch_size):
    period = rng.integers(segment // 8 + 1, segment // 2 + 2)
    clicks = np.exp(-(np.arange(segment) % period) / 200.0) * rng.normal(size=segment)
    sources[b, 0] = 0.3 * clicks[:, None]
    for s, (low, high) in ((1, (40, 200)), (3, (200, 1000))):
      freq = rng.uniform(low, high)
      phase = rng.uniform(0, 2 * np.pi, size=2)
      sources[b, s] = 0.3 * np.sin(2 * np.pi * freq * t[:, None] + phase)
    sources[b, 2] = 0.05 * rng.normal(size=(segment, 2))
  mixture = sources.sum(axis=1)
  if nan:
    mixture[:] = np.nan
  return {"mixture": mixture, "sources": sources}


def example_tracks(num_tracks: int = 2, seconds: float = 0.5, seed: int = 1000,
                   sample_rate: int = 44100):
  """A ``validation_tracks`` function over ``num_tracks`` synthetic tracks."""
  def tracks():
    for i in range(num_tracks):
      batch = make_example_batch(1, int(seconds * sample_rate), seed=(seed, i),
                                 sample_rate=sample_rate)
      yield f"synthetic{i}", batch["mixture"][0], batch["sources"][0]
  return tracks
