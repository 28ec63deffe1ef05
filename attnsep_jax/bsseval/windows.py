"""BSS Eval v4 metrics per window with the track's distortion filters.

In each window museval convolves the window's references (zero outside it)
with the filters and compares the results over the window plus the filter
tail.  All the energies it needs are sums of squares of linear combinations
of the references' and estimates' spectra, so they are computed in the
frequency domain (Parseval) without going back to the time domain.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from attnsep_jax.bsseval.filters import on_cpu
from attnsep_jax.bsseval.stems import padded_slice



def windows_per_call() -> int:
  """Windows per jitted call: one compilation for any track length.  On CPU
  one window at a time keeps the FFTs in cache (fastest)."""
  return 1 if on_cpu() else 16


def window_count(length: int, window_samples: int, hop_samples: int) -> int:
  """museval's ``Framing.nwin``: full windows only (a partial last one is dropped)."""
  if window_samples < length:
    return (length - window_samples + hop_samples) // hop_samples
  return 1


def fft_samples(frame_samples: int, filter_taps: int) -> int:
  """Smallest 2^a 3^b 5^c >= frame + taps - 1: a linear convolution, fast FFT."""
  needed = frame_samples + filter_taps - 1
  best = 1 << (needed - 1).bit_length()
  power5 = 1
  while power5 < best:
    power3 = power5
    while power3 < best:
      size = power3
      while size < needed:
        size *= 2
      best = min(best, size)
      power3 *= 3
    power5 *= 5
  return best


def _db(num, den):
  """museval's _safe_db: +inf where the denominator is 0."""
  return jnp.where(den == 0, jnp.inf, 10.0 * jnp.log10(num / den))


def _silent(frames):
  """(K, S, W, C) -> (K,): some source's channel sum is zero at every sample."""
  return jnp.any(jnp.all(jnp.sum(frames, axis=-1) == 0, axis=-1), axis=-1)


@functools.partial(jax.jit, static_argnames=("fft_size",))
def _metrics(ref_frames, est_frames, all_spectra, own_spectra, *, fft_size: int):
  """(4, K, S) SDR, ISR, SIR, SAR (dB) of K windows.

  Args:
    ref_frames: (K, S, W, C) reference windows.
    est_frames: (K, S, W, C) estimate windows.
    all_spectra: (S_est, S_ref, C_in, C_out, F) spectra of the filters on all references.
    own_spectra: (S, C_in, C_out, F) spectra of the filters on the own reference.
    fft_size: FFT length (>= W + taps - 1).
  """
  refs = ref_frames.astype(jnp.float64)
  ests = est_frames.astype(jnp.float64)
  ref_spectra = jnp.fft.rfft(refs.transpose(0, 1, 3, 2), n=fft_size)   # (K, S, C, F)
  est_spectra = jnp.fft.rfft(ests.transpose(0, 1, 3, 2), n=fft_size)
  # Projections' spectra, (K, S_est, C_out, F).
  # Written as broadcast-and-sum: XLA's CPU einsum of this shape is ~3x slower.
  proj_all = jnp.sum(all_spectra * ref_spectra[:, None, :, :, None], axis=(2, 3))
  proj_own = jnp.sum(own_spectra * ref_spectra[:, :, :, None], axis=2)
  # Parseval for a real signal: bins 1 .. ceil(N/2)-1 stand for two.
  weight = jnp.full(fft_size // 2 + 1, 2.0).at[0].set(1.0)
  if fft_size % 2 == 0:
    weight = weight.at[-1].set(1.0)

  def energy(spectra):   # (K, S, C, F) -> (K, S)
    return jnp.sum(weight * jnp.abs(spectra) ** 2, axis=(-2, -1)) / fft_size

  signal = jnp.sum(refs ** 2, axis=(-2, -1))
  metrics = jnp.stack([
      _db(signal, jnp.sum((ests - refs) ** 2, axis=(-2, -1))),   # SDR: error = ŝ - s
      _db(signal, energy(proj_own - ref_spectra)),               # ISR: e_spat
      _db(energy(proj_own), energy(proj_all - proj_own)),        # SIR: e_interf
      _db(energy(proj_all), energy(est_spectra - proj_all)),     # SAR: e_artif
  ])
  silent = _silent(ref_frames) | _silent(est_frames)
  return jnp.where(silent[None, :, None], jnp.nan, metrics)


def framewise_metrics(references: np.ndarray, estimates: np.ndarray, all_filters: jax.Array,
                      own_filters: jax.Array, window_samples: int,
                      hop_samples: int) -> np.ndarray:
  """museval's per-window metrics.

  Args:
    references: (S, T, C) reference stems.
    estimates: (S, T, C) estimates of the same length.
    all_filters: (S_ref, C_in, L, S_est, C_out) filters on all references.
    own_filters: (S, C_in, L, C_out) filters on each source's own reference.
    window_samples: window length.
    hop_samples: hop between window starts.
  Returns:
    (4, S, windows) float64 SDR, ISR, SIR, SAR in dB, NaN in silent windows.
  """
  length = references.shape[1]
  windows = window_count(length, window_samples, hop_samples)
  frame = min(window_samples, length)
  fft_size = fft_samples(frame, all_filters.shape[2])
  # (S_est, S_ref, C_in, C_out, F) and (S, C_in, C_out, F)
  all_spectra = jnp.fft.rfft(all_filters.transpose(3, 0, 1, 4, 2), n=fft_size)
  own_spectra = jnp.fft.rfft(own_filters.transpose(0, 1, 3, 2), n=fft_size)
  chunks, per_call = [], windows_per_call()
  for first in range(0, windows, per_call):
    starts = [(first + k) * hop_samples for k in range(per_call)]
    # Windows past the end (to fill the last call) are cut off below.
    ref_frames = np.stack([padded_slice(references, s, frame) for s in starts])
    est_frames = np.stack([padded_slice(estimates, s, frame) for s in starts])
    chunks.append(_metrics(ref_frames, est_frames, all_spectra, own_spectra,
                           fft_size=fft_size))
  metrics = np.concatenate([np.asarray(c) for c in chunks], axis=1)[:, :windows]
  return metrics.transpose(0, 2, 1)                                   # (4, S, windows)
