"""Soft masks: stems as ratio masks over the mixture's own STFT.

One home for two uses: the "oracle IRM" reference of evaluation (masks from
the true stems) and the optional post-filter of inference
(``config.inference.soft_mask_power``: masks from the network's own
estimates). A masked stem only reweights the mixture's time-frequency bins,
so it cannot carry energy the mixture does not have at that bin, and the
masks sum to one, so the stems sum to the mixture.
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.scipy.signal

# Shares bins where every stem is silent equally instead of dividing by zero;
# small against any audible magnitude (float32, waveforms in [-1, 1]).
_SILENT_BIN = 1e-10


def soft_mask(mixture, stems, power: float = 1.0, fft_size: int = 4096):
  """Stems re-estimated as ratio masks of the mixture's STFT.

  mask_j = |S_j|^p / sum_k |S_k|^p per bin and channel, applied to the
  mixture's STFT (Hann window, hop ``fft_size // 4``) and inverted.

  Args:
    mixture: (..., time, channels) waveform.
    stems: (..., sources, time, channels) waveforms whose magnitudes set the
      masks (estimates, or the true stems for the oracle).
    power: p; 1: magnitude ratio, 2: power ratio (Wiener-like, "IRM2").
    fft_size: STFT window, in samples.
  Returns:
    (..., sources, time, channels) float32, summing to ``mixture``.
  """
  mixture = jnp.asarray(mixture, jnp.float32)
  stems = jnp.asarray(stems, jnp.float32)
  length = mixture.shape[-2]
  if length < fft_size:
    # Zeros in the mixture stay zeros in every stem, so padding a signal
    # shorter than one window changes nothing but what the STFT accepts.
    mixture, stems = (_pad_time(x, fft_size - length) for x in (mixture, stems))
  stft_args = dict(nperseg=fft_size, noverlap=fft_size - fft_size // 4)
  _, _, mix_spec = jax.scipy.signal.stft(jnp.swapaxes(mixture, -1, -2), **stft_args)
  _, _, stem_spec = jax.scipy.signal.stft(jnp.swapaxes(stems, -1, -2), **stft_args)
  # mix_spec: (..., channels, freq, frames); stem_spec: (..., sources, channels, freq, frames)
  weight = jnp.abs(stem_spec) ** power + _SILENT_BIN
  mask = weight / jnp.sum(weight, axis=-4, keepdims=True)
  _, masked = jax.scipy.signal.istft(mask * mix_spec[..., None, :, :, :], **stft_args)
  masked = jnp.swapaxes(masked[..., :length], -1, -2)   # (..., sources, time', channels)
  return _pad_time(masked, length - masked.shape[-2]).astype(jnp.float32)


def _pad_time(x, frames: int):
  """(..., time, channels) with ``frames`` zeros appended in time (none if <= 0)."""
  if frames <= 0:
    return x
  return jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, frames), (0, 0)])
