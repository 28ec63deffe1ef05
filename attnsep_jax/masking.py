"""Soft masks: stems as ratio masks over the mixture's own STFT.

One home for two uses: the "oracle IRM" reference of evaluation (masks from
the true stems) and the optional post-filter of inference
(``config.inference.soft_mask_power``: masks from the network's own
estimates). A masked stem only reweights the mixture's time-frequency bins,
so it cannot carry energy the mixture does not have at that bin, and the
masks sum to one, so the stems sum to the mixture. Optionally the masked
stems then go through a few iterations of the multichannel Wiener filter
that Open-Unmix applies to its own estimates (norbert's expectation-
maximisation), which adds what the ratio masks ignore: each stem's position
in the stereo image.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

# Shares bins where every stem is silent equally instead of dividing by zero;
# small against any audible magnitude (float32, waveforms in [-1, 1]).
_SILENT_BIN = 1e-10
# Frames per sample: the hop is a quarter window (Hann, 75% overlap).
_OVERLAP = 4
# The Wiener filter's arithmetic runs on spectrograms scaled so that the
# loudest bin is about this magnitude, and adds sqrt(_WIENER_EPS) times the
# identity to the mixture's covariance before inverting it: norbert's
# constants (scale_factor=10, eps=1e-10), so that float32 stays well-conditioned.
_WIENER_SCALE = 10.0
_WIENER_EPS = 1e-10


def soft_mask(mixture, stems, power: float = 1.0, fft_size: int = 4096,
              wiener_iterations: int = 0):
  """Stems re-estimated as ratio masks of the mixture's STFT.

  mask_j = |S_j|^p / sum_k |S_k|^p per bin and channel, applied to the
  mixture's STFT (Hann window, hop ``fft_size // 4``) and inverted; with
  ``wiener_iterations`` > 0 the masked spectrograms are refined by that many
  iterations of the multichannel Wiener filter (``wiener_refine``) first.

  Args:
    mixture: (..., time, channels) waveform.
    stems: (..., sources, time, channels) waveforms whose magnitudes set the
      masks (estimates, or the true stems for the oracle).
    power: p; 1: magnitude ratio, 2: power ratio (Wiener-like, "IRM2").
    fft_size: STFT window, in samples; a multiple of 4.
    wiener_iterations: multichannel Wiener (EM) iterations after the masks;
      0: the masks alone.
  Returns:
    (..., sources, time, channels) float32, summing to ``mixture`` (to within
    the Wiener filter's regularisation when it is used).
  """
  if fft_size % _OVERLAP:
    raise ValueError(f"the soft mask's fft_size must be a multiple of {_OVERLAP}, got {fft_size}")
  mixture = jnp.swapaxes(jnp.asarray(mixture, jnp.float32), -1, -2)   # (..., channels, time)
  stems = jnp.swapaxes(jnp.asarray(stems, jnp.float32), -1, -2)
  length = mixture.shape[-1]
  mix_spec = stft(mixture, fft_size)          # (..., channels, frames, freq)
  stem_spec = stft(stems, fft_size)           # (..., sources, channels, frames, freq)
  weight = jnp.abs(stem_spec) ** power + _SILENT_BIN
  mask = weight / jnp.sum(weight, axis=-4, keepdims=True)
  masked = mask * mix_spec[..., None, :, :, :]  # (..., sources, channels, frames, freq)
  if wiener_iterations:
    masked = wiener_refine(mix_spec, masked, wiener_iterations)
  return jnp.swapaxes(istft(masked, fft_size, length), -1, -2)   # (..., sources, time, channels)


def wiener_refine(mix_spec, stem_specs, iterations: int = 1):
  """Multichannel Wiener filtering by expectation-maximisation (Open-Unmix's
  ``wiener``, after norbert; Nugraha, Liutkus and Vincent, 2016).

  Each source j is modelled at bin (t, f) as a zero-mean complex Gaussian
  with covariance v_j(t, f) R_j(f): a power spectrogram v_j (the channel
  mean of |y_j|^2) times a spatial covariance R_j (y_j y_j^H summed over
  frames, over v_j summed over frames), i.e. where in the stereo image the
  source sits. One iteration re-estimates v and R from the current stems and
  replaces them by the posterior means y_j = v_j R_j C_x^-1 x, with C_x =
  sum_k v_k R_k the mixture's covariance.

  Args:
    mix_spec: (..., channels, frames, freq) complex STFT of the mixture.
    stem_specs: (..., sources, channels, frames, freq) initial estimates.
    iterations: EM iterations (1 in Open-Unmix's separator).
  Returns:
    (..., sources, channels, frames, freq) complex.
  """
  x = jnp.moveaxis(mix_spec, -3, -1)        # (..., frames, freq, channels)
  y = jnp.moveaxis(stem_specs, -3, -1)      # (..., sources, frames, freq, channels)
  scale = jnp.maximum(1.0, jnp.max(jnp.abs(x), axis=(-3, -2, -1), keepdims=True)
                      / _WIENER_SCALE)      # (..., 1, 1, 1)
  x, y = x / scale, y / scale[..., None, :, :, :]
  channels = x.shape[-1]
  regulariser = math.sqrt(_WIENER_EPS) * jnp.eye(channels, dtype=x.dtype)
  for _ in range(iterations):
    # Broadcast products rather than einsums: with C = 2 the contractions are
    # tiny, and XLA's CPU dot kernels cost 1.2-6x more for them.
    power = jnp.mean(jnp.abs(y) ** 2, axis=-1)                          # (..., S, frames, freq)
    outer = y[..., :, None] * jnp.conj(y[..., None, :])                 # (..., S, frames, freq, C, C)
    spatial = outer.sum(axis=-4) / (_WIENER_EPS + power.sum(axis=-2))[..., None, None]
    # C_x per bin: sum_j v_j R_j, (..., frames, freq, C, C)
    mix_cov = jnp.sum(power[..., None, None] * spatial[..., None, :, :, :], axis=-5) + regulariser
    whitened = _solve(mix_cov, x)                                       # (..., frames, freq, C)
    # y_j = v_j R_j C_x^-1 x, (..., S, frames, freq, C)
    y = power[..., None] * jnp.sum(spatial[..., None, :, :, :] * whitened[..., None, :, :, None, :],
                                   axis=-1)
  return jnp.moveaxis(y * scale[..., None, :, :, :], -1, -3)


def _solve(matrices, vectors):
  """``matrices^-1 @ vectors`` for (..., C, C) and (..., C); stereo in closed form
  (Cramer's rule: several times faster than a batched LU on a CPU)."""
  if matrices.shape[-1] != 2:
    return jnp.linalg.solve(matrices, vectors[..., None])[..., 0]
  a, b = matrices[..., 0, 0], matrices[..., 0, 1]
  c, d = matrices[..., 1, 0], matrices[..., 1, 1]
  x0, x1 = vectors[..., 0], vectors[..., 1]
  det = a * d - b * c
  return jnp.stack([d * x0 - b * x1, a * x1 - c * x0], axis=-1) / det[..., None]


# Framing by reshapes rather than jax.scipy.signal.stft/istft: the same frames
# (zero boundary of half a window at each end) at a third of the time on a
# CPU, forward and backward, which counts when the mask is trained through.
def stft(x, fft_size: int):
  """(..., time) -> (..., frames, fft_size // 2 + 1) complex; Hann, hop fft_size / 4."""
  hop = fft_size // _OVERLAP
  length = x.shape[-1]
  frames = _num_frames(length, fft_size)
  end_pad = hop * (frames + _OVERLAP - 1) - length - fft_size // 2
  x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(fft_size // 2, end_pad)])
  blocks = x.reshape(*x.shape[:-1], frames + _OVERLAP - 1, hop)
  # Frame t is blocks t .. t+3: (..., frames, fft_size)
  framed = jnp.concatenate([blocks[..., k:k + frames, :] for k in range(_OVERLAP)], axis=-1)
  return jnp.fft.rfft(framed * hann_window(fft_size), axis=-1)


def istft(spec, fft_size: int, length: int):
  """Inverse of ``stft`` (weighted overlap-add), trimmed to ``length`` samples."""
  hop = fft_size // _OVERLAP
  frames = spec.shape[-2]
  framed = jnp.fft.irfft(spec, n=fft_size, axis=-1) * hann_window(fft_size)
  quarters = framed.reshape(*framed.shape[:-1], _OVERLAP, hop)   # (..., frames, 4, hop)
  lead = [(0, 0)] * (quarters.ndim - 3)
  # Quarter k of frame t lands in block t + k: (..., frames + 3, hop)
  blocks = sum(jnp.pad(quarters[..., k, :], lead + [(k, _OVERLAP - 1 - k), (0, 0)])
               for k in range(_OVERLAP))
  signal = blocks.reshape(*blocks.shape[:-2], -1)
  start = fft_size // 2
  return signal[..., start:start + length] / _window_power(fft_size, frames)[start:start + length]


def _num_frames(length: int, fft_size: int) -> int:
  """Frames covering ``length`` samples plus half a window of zeros each side."""
  return math.ceil((length + fft_size) / (fft_size // _OVERLAP)) - (_OVERLAP - 1)


def hann_window(fft_size: int) -> np.ndarray:
  """Periodic Hann window (scipy's ``get_window("hann", n)``), float32."""
  return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(fft_size) / fft_size)).astype(np.float32)


def _window_power(fft_size: int, frames: int) -> np.ndarray:
  """Overlap-added squared window: what ``istft`` divides by (never 0 inside)."""
  quarters = (hann_window(fft_size).astype(np.float64) ** 2).reshape(_OVERLAP, -1)
  total = np.zeros((frames + _OVERLAP - 1, fft_size // _OVERLAP))   # (blocks, hop)
  for k in range(_OVERLAP):
    total[k:k + frames] += quarters[k]
  return total.reshape(-1).astype(np.float32)
