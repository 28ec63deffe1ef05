"""Input checks and zero-filled slicing of stems ``(sources, time, channels)``."""

from __future__ import annotations

import numpy as np


def _as_array(name: str, stems) -> np.ndarray:
  """float32 stays float32 (upcast later, block by block), the rest float64."""
  array = np.asarray(stems)
  if array.ndim == 2:   # (sources, time): mono, as museval's np.atleast_3d reads it
    array = array[..., None]
  if array.ndim != 3:
    raise ValueError(f"{name} must be (sources, time, channels), got shape {array.shape}")
  if array.dtype != np.float32:
    array = array.astype(np.float64)
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{name} contain NaN or infinite values")
  return array


def _silent_sources(stems: np.ndarray) -> list[int]:
  """museval's silence test: the sum over channels is zero at every sample."""
  return [s for s in range(stems.shape[0]) if not np.any(stems[s].sum(axis=-1))]


def check_stems(references, estimates) -> tuple[np.ndarray, np.ndarray]:
  """Validated stems, estimates padded/truncated to the references' length.

  Args:
    references: (sources, time, channels) or (sources, time) true stems.
    estimates: the estimates, same sources and channels; any length.
  Returns:
    (references, estimates) as float32/float64 arrays of equal shape.
  Raises:
    ValueError: a one-line reason (shapes, NaN, empty or all-silent stems).
  """
  references = _as_array("references", references)
  estimates = _as_array("estimates", estimates)
  if references.shape[0] != estimates.shape[0] or references.shape[2] != estimates.shape[2]:
    raise ValueError(f"references {references.shape} and estimates {estimates.shape} "
                     "differ in sources or channels")
  if references.size == 0:
    raise ValueError(f"empty references, shape {references.shape}")
  length = references.shape[1]
  # museval.evaluate(padding=True): the estimates take the references' length.
  estimates = estimates[:, :length]
  if estimates.shape[1] < length:
    estimates = np.pad(estimates, ((0, 0), (0, length - estimates.shape[1]), (0, 0)))
  for name, stems in (("reference", references), ("estimated", estimates)):
    silent = _silent_sources(stems)
    if silent:
      raise ValueError(f"{name} source(s) {silent} are silent (all zeros); BSS Eval "
                       "is undefined for them (museval raises too)")
  return references, estimates


def padded_slice(stems: np.ndarray, start: int, frames: int) -> np.ndarray:
  """``stems[:, start:start + frames]``, zeros where it reaches outside."""
  out = np.zeros((stems.shape[0], frames, stems.shape[2]), stems.dtype)
  lo, hi = max(start, 0), min(start + frames, stems.shape[1])
  if hi > lo:
    out[:, lo - start:hi - start] = stems[:, lo:hi]
  return out
