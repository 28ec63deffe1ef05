"""BSS Eval v4 in JAX: museval's numbers, jit-compiled and batched.

Two SDRs are in use for music separation; never compare one with the other:

* **cSDR**, BSS Eval v4 (``bss_eval_v4`` here, ``museval.evaluate``):
  SDR/ISR/SIR/SAR on 1 s windows with 512-tap distortion filters fitted once
  per track; a track scores the median over its windows, a data set the
  median over tracks (SiSEC 2018 and every published MUSDB18 table).
* **uSDR**, the MDX/SDX challenges' utterance SDR
  (``attnsep_jax.metrics.utterance_sdr``): 10 log10(sum s^2 / sum (s - ŝ)^2)
  over the whole track, mean over songs.

``bss_eval_v4(references, estimates)`` equals
``museval.evaluate(references, estimates, win=44100, hop=44100, mode="v4",
padding=True)`` to round-off (tests/test_bsseval.py): the "images" variant
with the filters over all sources and channels, museval's ridge on the Gram
matrix, its windowing (a partial last window is dropped; a track shorter
than a window is one window), +inf for a zero error energy and NaN in windows
where a reference or an estimate is silent.

The computation needs float64 (the Gram system is ill-conditioned).  It runs
under ``jax.enable_x64`` as a context manager, which is thread-local and
scoped: importing or calling this module never switches the process (or a
float32 training loop in another thread) to x64.  It runs on the default
device (CPU or GPU); on a TPU, which has no float64 FFT or LU, on the host CPU.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from attnsep_jax.bsseval.filters import CORRELATION_FFT, distortion_filters, lag_correlations
from attnsep_jax.bsseval.stems import check_stems
from attnsep_jax.bsseval.windows import framewise_metrics, window_count

FILTER_TAPS = 512   # museval's filters_len
MAX_FILTER_TAPS = CORRELATION_FFT // 4   # longer lags leave too little of each FFT block


class BSSEvalScores(NamedTuple):
  """Per-window BSS Eval v4 metrics in dB, each (sources, windows) float64."""
  sdr: np.ndarray
  isr: np.ndarray
  sir: np.ndarray
  sar: np.ndarray


def float64_scope():
  """Context manager enabling float64 in JAX for this thread only."""
  try:
    return jax.enable_x64(True)
  except (AttributeError, TypeError):   # JAX versions before the scoped flag
    from jax.experimental import enable_x64
    return enable_x64()


def compute_device() -> jax.Device:
  """This process's first device; its CPU on a TPU, which lacks float64 FFTs and LU."""
  device = jax.local_devices()[0]   # jax.devices()[0] may belong to another host
  return jax.local_devices(backend="cpu")[0] if device.platform == "tpu" else device


def bss_eval_v4(references, estimates, window_samples: int = 44100,
                hop_samples: int | None = None,
                filter_taps: int = FILTER_TAPS) -> BSSEvalScores:
  """museval's BSS Eval v4 ("images", time-invariant filters), per window.

  Args:
    references: (sources, time, channels) true stems (float32 or float64).
    estimates: (sources, time', channels) estimates; padded with zeros or
      truncated to the references' length, as museval does.
    window_samples: window length (museval's ``win``).
    hop_samples: hop between windows (museval's ``hop``; default: the window).
    filter_taps: distortion filter length (museval's ``filters_len``).
  Returns:
    BSSEvalScores of (sources, windows) arrays, in the sources' order.
  Raises:
    ValueError: bad shapes, NaN/inf, or a source silent over the whole track.
  """
  hop_samples = window_samples if hop_samples is None else hop_samples
  for name, value in (("window_samples", window_samples), ("hop_samples", hop_samples),
                      ("filter_taps", filter_taps)):
    if int(value) != value or value < 1:
      raise ValueError(f"{name} must be a positive integer, got {value!r}")
  if filter_taps > MAX_FILTER_TAPS:
    raise ValueError(f"filter_taps must be at most {MAX_FILTER_TAPS}, got {filter_taps}")
  references, estimates = check_stems(references, estimates)
  with float64_scope(), jax.default_device(compute_device()):
    lags = lag_correlations(references, estimates, int(filter_taps))
    all_filters, own_filters = distortion_filters(lags, references.shape[0])
    metrics = framewise_metrics(references, estimates, all_filters, own_filters,
                                int(window_samples), int(hop_samples))
  return BSSEvalScores(*metrics)


__all__ = ["BSSEvalScores", "FILTER_TAPS", "bss_eval_v4", "compute_device", "float64_scope",
           "window_count"]
