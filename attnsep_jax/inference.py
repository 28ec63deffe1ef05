"""Chunked separation of a whole track: the one inference path of the project.

Used by validation during training, ``attnsep evaluate``, ``attnsep
separate``, the web page, the ablation study and the benchmarks.  The track
is cut into overlapping segments, the segments are batched through a jitted
apply compiled once per (batch, segment) shape (the last batch is padded, so
a track of any length reuses the same executable), and the outputs are
cross-faded back with a triangular window.

The core is a generator that reads the input through a ``read(start, frames)``
callable and yields finished stretches of output as soon as no later segment
overlaps them, so a caller that writes them to disk (``separate.py``) holds
only a few segments in memory however long the track is.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from attnsep_jax.models.network import AttnSepNet

Reader = Callable[[int, int], np.ndarray]   # (start, frames) -> (frames, channels)


@functools.lru_cache(maxsize=16)
def _jitted_apply(model: AttnSepNet, soft_mask_power: float, soft_mask_fft_size: int,
                  wiener_iterations: int):
  # One compiled function per model definition and post-filter; jit's own
  # cache then holds one executable per input shape, and every chunk batch
  # has the same shape. The post-filter is the network's own soft-mask stage
  # switched on (it has no parameters), so a model trained through the mask
  # is never masked twice.
  if soft_mask_power:
    model = model.clone(soft_mask_power=soft_mask_power, soft_mask_fft_size=soft_mask_fft_size,
                        wiener_iterations=wiener_iterations)

  def apply(params, mixture):                                # (b, segment, C)
    return model.apply({"params": params}, mixture)          # (b, S, segment, C)
  return jax.jit(apply)


def post_filter_problem(inference) -> str | None:
  """Why ``inference`` settings cannot run (one line), or None when they can."""
  if inference.get("wiener_iterations") and not inference.get("soft_mask_power"):
    return ("the Wiener filter refines the soft mask's stems: wiener_iterations "
            "needs soft_mask_power > 0 (--soft-mask-power 1)")
  return None


def triangular_window(length: int) -> np.ndarray:
  """Strictly positive triangle, peak 1 in the middle: (length,)."""
  position = (np.arange(length, dtype=np.float64) + 0.5) / length
  window = 1.0 - np.abs(2.0 * position - 1.0)
  return np.maximum(window, 1e-3).astype(np.float32)


def array_reader(mixture: np.ndarray) -> Reader:
  """A ``read(start, frames)`` over an in-memory (time, channels) array."""
  return lambda start, frames: mixture[start:start + frames]


def _shifted(read: Reader, offset: int) -> Reader:
  """The input delayed by ``offset`` samples of silence."""
  def read_shifted(start, frames):
    head = max(0, offset - start)
    body = read(max(0, start - offset), max(0, frames - head))
    if head:
      body = np.concatenate([np.zeros((min(head, frames),) + body.shape[1:], body.dtype), body])
    return body
  return read_shifted


def _stream_once(model, params, read: Reader, length: int, channels: int, segment: int,
                 hop: int, batch_size: int, progress,
                 soft_mask: tuple[float, int, int]) -> Iterator[np.ndarray]:
  num_segments = max(1, math.ceil(max(length - segment, 0) / hop) + 1)
  window = triangular_window(segment)[:, None]              # (segment, 1)
  apply = _jitted_apply(model, *soft_mask)
  pending = np.zeros((model.num_sources, 0, channels), np.float32)
  pending_weight = np.zeros((0, 1), np.float32)
  pending_start = 0                                          # first sample of `pending`
  for first in range(0, num_segments, batch_size):
    starts = [i * hop for i in range(first, min(first + batch_size, num_segments))]
    chunks = np.zeros((batch_size, segment, channels), np.float32)
    for row, start in enumerate(starts):
      piece = read(start, min(segment, length - start))
      chunks[row, :len(piece)] = piece
    estimates = np.asarray(apply(params, jnp.asarray(chunks)))   # (b, S, segment, C)
    end = min(starts[-1] + segment, length)
    grow = end - pending_start - pending.shape[1]
    if grow > 0:
      pending = np.concatenate(
          [pending, np.zeros((model.num_sources, grow, channels), np.float32)], axis=1)
      pending_weight = np.concatenate([pending_weight, np.zeros((grow, 1), np.float32)])
    for row, start in enumerate(starts):
      used = min(segment, length - start)
      at = start - pending_start
      pending[:, at:at + used] += estimates[row, :, :used] * window[:used]
      pending_weight[at:at + used] += window[:used]
    # No later segment reaches before the next batch's first start.
    next_start = (first + batch_size) * hop
    done_until = length if next_start >= num_segments * hop else min(next_start, length)
    ready = done_until - pending_start
    if ready > 0:
      yield pending[:, :ready] / pending_weight[:ready]
      pending, pending_weight = pending[:, ready:], pending_weight[ready:]
      pending_start = done_until
    if progress is not None:
      progress(min(first + batch_size, num_segments), num_segments)


class _Take:
  """Re-blocks a stream of (sources, n, channels) arrays into exact sizes."""

  def __init__(self, stream):
    self.stream, self.buffer = stream, None

  def take(self, frames: int) -> np.ndarray:
    parts, have = [], 0
    if self.buffer is not None:
      parts, have = [self.buffer], self.buffer.shape[1]
    while have < frames:
      block = next(self.stream)
      parts.append(block)
      have += block.shape[1]
    joined = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    self.buffer = joined[:, frames:]
    return joined[:, :frames]


def iter_separate(model: AttnSepNet, params, read: Reader, length: int, channels: int, *,
                  sample_rate: int = 44100, segment_seconds: float = 10.0,
                  overlap: float = 0.25, batch_size: int = 4, shifts: int = 0,
                  seed: int = 0, soft_mask_power: float = 0.0, soft_mask_fft_size: int = 8192,
                  wiener_iterations: int = 0, progress=None) -> Iterator[np.ndarray]:
  """Separates a track chunk by chunk, yielding consecutive output stretches.

  Args:
    model: the network definition.
    params: its parameters (the EMA ones when the run kept an average).
    read: ``read(start, frames)`` returns up to ``frames`` input samples
      ``(n, channels)`` from ``start`` (an in-memory array: ``array_reader``).
    length: input length, in samples.
    channels: input channels (the model's ``audio_channels``).
    sample_rate: input rate, in Hz (the model's training rate).
    segment_seconds: length of each chunk fed to the model.
    overlap: fraction of a segment shared by consecutive segments, in [0, 1).
    batch_size: segments per apply call.
    shifts: number of passes with the input delayed by a random offset of up
      to half a segment, averaged (Demucs's test-time "shifts"); 0: one pass.
    seed: seed of the random shifts.
    soft_mask_power: 0: the network's stems as they are; p > 0: each
      segment's stems re-estimated as ratio masks |S_j|^p / sum_k |S_k|^p of
      the mixture's STFT (``masking.soft_mask``; 1: magnitude ratio).
    soft_mask_fft_size: the post-filter's STFT window, in samples.
    wiener_iterations: with the post-filter, iterations of the multichannel
      Wiener filter on the masked stems (``masking.wiener_refine``); 0: none.
    progress: optional ``progress(done, total)`` callback, in segments.
  Yields:
    (sources, n, channels) float32 blocks whose lengths add up to ``length``.
  """
  if length <= 0:
    raise ValueError("cannot separate an empty mixture")
  if not 0.0 <= overlap < 1.0:
    raise ValueError(f"overlap must be in [0, 1), got {overlap}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  segment = max(1, int(round(segment_seconds * sample_rate)))
  hop = max(1, int(segment * (1.0 - overlap)))
  problem = post_filter_problem(dict(soft_mask_power=soft_mask_power,
                                    wiener_iterations=wiener_iterations))
  if problem:
    raise ValueError(problem)
  soft_mask = (float(soft_mask_power), int(soft_mask_fft_size), int(wiener_iterations))
  if not shifts:
    yield from _stream_once(model, params, read, length, channels, segment, hop,
                            batch_size, progress, soft_mask)
    return
  rng = np.random.default_rng(seed)
  offsets = [int(o) for o in rng.integers(0, segment // 2 + 1, size=shifts)]
  passes = []
  for offset in offsets:
    taker = _Take(_stream_once(model, params, _shifted(read, offset), length + offset,
                               channels, segment, hop, batch_size, None, soft_mask))
    if offset:
      taker.take(offset)  # the delay's silence
    passes.append(taker)
  # Lock-step over the passes, one segment of output at a time.
  for start in range(0, length, segment):
    frames = min(segment, length - start)
    yield sum(p.take(frames) for p in passes) / shifts
    if progress is not None:
      progress(min(start + segment, length), length)


def separate(model: AttnSepNet, params, mixture: np.ndarray, *,
             sample_rate: int = 44100, segment_seconds: float = 10.0,
             overlap: float = 0.25, batch_size: int = 4, shifts: int = 0,
             seed: int = 0, soft_mask_power: float = 0.0, soft_mask_fft_size: int = 8192,
             wiener_iterations: int = 0, progress=None) -> np.ndarray:
  """Separates a whole in-memory track: (time, channels) -> (sources, time, channels).

  Arguments as ``iter_separate``.
  """
  mixture = np.asarray(mixture, np.float32)
  if mixture.ndim != 2:
    raise ValueError(f"mixture must be (time, channels), got shape {mixture.shape}")
  blocks = list(iter_separate(
      model, params, array_reader(mixture), mixture.shape[0], mixture.shape[1],
      sample_rate=sample_rate, segment_seconds=segment_seconds, overlap=overlap,
      batch_size=batch_size, shifts=shifts, seed=seed, soft_mask_power=soft_mask_power,
      soft_mask_fft_size=soft_mask_fft_size, wiener_iterations=wiener_iterations,
      progress=progress))
  return np.concatenate(blocks, axis=1)
