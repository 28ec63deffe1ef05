"""Chunked separation of a whole track: the one inference path of the project.

Used by validation during training, ``evaluate.py``, ``attnsep-separate`` and
the benchmarks.  The track is cut into overlapping segments, the segments are
batched through a jitted apply that is compiled once per (batch, segment)
shape, and the outputs are cross-faded back with a triangular window.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from attnsep_jax.models.network import AttnSepNet


@functools.lru_cache(maxsize=16)
def _jitted_apply(model: AttnSepNet):
  # One compiled function per model definition; jit's own cache then holds one
  # executable per input shape, and every chunk batch has the same shape.
  return jax.jit(lambda params, mixture: model.apply({"params": params}, mixture))


def triangular_window(length: int) -> np.ndarray:
  """Strictly positive triangle, peak 1 in the middle: (length,)."""
  ramp = np.arange(1, length // 2 + 1, dtype=np.float32)
  rise = ramp / ramp[-1] if len(ramp) else ramp
  window = np.concatenate([rise, rise[::-1][: length - len(rise)]])
  if len(window) < length:  # odd length: the centre sample
    window = np.insert(window, len(rise), 1.0)
  return np.maximum(window, 1e-3).astype(np.float32)


def separate(model: AttnSepNet, params, mixture: np.ndarray, *,
             sample_rate: int = 44100, segment_seconds: float = 10.0,
             overlap: float = 0.25, batch_size: int = 4, shifts: int = 0,
             seed: int = 0) -> np.ndarray:
  """Separates a whole track.

  Args:
    model: the network definition.
    params: its parameters (prefer the EMA ones).
    mixture: (time, channels) float array.
    sample_rate: of ``mixture``, in Hz (must be the model's training rate).
    segment_seconds: length of each chunk fed to the model.
    overlap: fraction of a segment shared by consecutive segments, in [0, 1).
    batch_size: segments per apply call.
    shifts: extra passes with the input delayed by a random offset of up to
      half a segment, averaged (Demucs's test-time "shifts"); 0 disables.
    seed: seed of the random shifts.
  Returns:
    (sources, time, channels) float32 stems.
  """
  mixture = np.asarray(mixture, np.float32)
  if mixture.ndim != 2:
    raise ValueError(f"mixture must be (time, channels), got shape {mixture.shape}")
  if not 0.0 <= overlap < 1.0:
    raise ValueError(f"overlap must be in [0, 1), got {overlap}")
  segment = int(round(segment_seconds * sample_rate))
  if shifts:
    rng = np.random.default_rng(seed)
    max_shift = segment // 2
    total = np.zeros((model.num_sources,) + mixture.shape, np.float32)
    for _ in range(shifts):
      offset = int(rng.integers(0, max_shift + 1))
      padded = np.pad(mixture, ((offset, 0), (0, 0)))
      total += _separate_once(model, params, padded, segment, overlap, batch_size)[:, offset:]
    return total / shifts
  return _separate_once(model, params, mixture, segment, overlap, batch_size)


def _separate_once(model, params, mixture, segment, overlap, batch_size):
  time, channels = mixture.shape
  hop = max(1, int(segment * (1.0 - overlap)))
  num_segments = max(1, math.ceil(max(time - segment, 0) / hop) + 1)
  window = triangular_window(segment)[None, :, None]       # (1, segment, 1)
  output = np.zeros((model.num_sources, time, channels), np.float32)
  weight = np.zeros((time, 1), np.float32)
  apply = _jitted_apply(model)
  for first in range(0, num_segments, batch_size):
    starts = [i * hop for i in range(first, min(first + batch_size, num_segments))]
    chunks = np.zeros((batch_size, segment, channels), np.float32)
    for row, start in enumerate(starts):
      piece = mixture[start:start + segment]
      chunks[row, :len(piece)] = piece
    estimates = np.asarray(apply(params, jnp.asarray(chunks)))  # (b, S, segment, C)
    for row, start in enumerate(starts):
      length = min(segment, time - start)
      output[:, start:start + length] += (estimates[row] * window)[:, :length]
      weight[start:start + length] += window[0, :length]
  return output / weight[None]
