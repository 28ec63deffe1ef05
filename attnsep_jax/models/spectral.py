"""Spectral branch: the U-Net's own blocks run along frequency (Hybrid Demucs).

Hybrid Demucs (Défossez, 2021) pairs the waveform U-Net with a second U-Net
over the mixture's STFT, the two meeting at the bottleneck; a spectrogram
front end carries over to new timbres better than a learnt waveform
filterbank (docs/architecture.md). Here the spectral U-Net is made of the
waveform U-Net's ``EncoderBlock`` and ``DecoderBlock``, applied to each STFT
frame as a 1-D signal over frequency (stride 4 in frequency per block, time
untouched). Unless ``time_layers`` is set, the branch has no time context
of its own: the dual-path separator at the shared bottleneck models time for
both branches. With it, each encoder block is followed by Hybrid Demucs's
residual dilated convolutions along time (its ``DConv``).

Shapes: the STFT's hop is the waveform U-Net's total stride, so spectral
frame ``t`` (centred on sample ``t * hop``) meets bottleneck frame ``t``; its
window is 4 hops, and its ``2 * hop`` bins (the Nyquist bin dropped), or the
lowest ``bins`` of them, shrink by the stride in every block, one block per
waveform block. Audio channels and real and imaginary parts are the input
channels ("complex as channels"), and the output is each source's complex
spectrogram, inverted and added to the waveform branch's stems; with
``spectral_mask``, it is instead a ratio mask per source of the mixture's
spectrogram (``masked_mixture``), as Open-Unmix writes its stems.
"""

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from attnsep_jax import masking
from attnsep_jax.models.attention import glu
from attnsep_jax.models.decoder import DecoderBlock
from attnsep_jax.models.encoder import BlockSettings, EncoderBlock

# Frames of the STFT per window (masking.stft's hop is a quarter window).
_WINDOW_HOPS = 4


def _spectrum_scale(fft_size: int) -> float:
  """sqrt(sum of the squared Hann window): white noise of unit variance then
  has bins of unit mean power, the scale of the normalised waveform."""
  return float(np.sqrt(np.sum(masking.hann_window(fft_size).astype(np.float64) ** 2)))


def complex_as_channels(x: jnp.ndarray, hop: int, bins: int = 0) -> jnp.ndarray:
  """(batch, time, C) waveform, time a multiple of ``hop`` -> (batch, time / hop, bins, 2C):
  the lowest ``bins`` bins (0: all ``2 * hop`` below Nyquist)."""
  fft_size = _WINDOW_HOPS * hop
  bins = bins or 2 * hop
  spec = masking.stft(jnp.swapaxes(x.astype(jnp.float32), 1, 2), fft_size)  # (b, C, frames+1, 2*hop+1)
  spec = spec[:, :, :-1, :bins] / _spectrum_scale(fft_size)   # last frame and top bins dropped
  spec = jnp.stack([spec.real, spec.imag], axis=-1)         # (b, C, frames, bins, 2)
  batch, channels, frames, bins, _ = spec.shape
  # (b, C, frames, bins, 2) -> (b, frames, bins, C * 2)
  return spec.transpose(0, 2, 3, 1, 4).reshape(batch, frames, bins, 2 * channels)


def waveform(cac: jnp.ndarray, hop: int, num_sources: int) -> jnp.ndarray:
  """Inverse of ``complex_as_channels`` per source:
  (batch, frames, bins, S * C * 2) -> (batch, frames * hop, S * C)."""
  fft_size = _WINDOW_HOPS * hop
  batch, frames, bins, features = cac.shape
  channels = features // (2 * num_sources)
  # (b, frames, bins, S * C * 2) -> (b, S, C, frames, bins) complex
  parts = cac.astype(jnp.float32).reshape(batch, frames, bins, num_sources, channels, 2)
  spec = (parts[..., 0] + 1j * parts[..., 1]).transpose(0, 3, 4, 1, 2)
  # The dropped last frame and top bins come back as zeros.
  spec = jnp.pad(spec, ((0, 0),) * 3 + ((0, 1), (0, 2 * hop + 1 - bins))) * _spectrum_scale(fft_size)
  audio = masking.istft(spec, fft_size, frames * hop)       # (b, S, C, time)
  # (b, S, C, time) -> (b, time, S * C), the waveform decoder's layout
  return audio.transpose(0, 3, 1, 2).reshape(batch, frames * hop, num_sources * channels)


def masked_mixture(logits: jnp.ndarray, cac: jnp.ndarray, num_sources: int) -> jnp.ndarray:
  """Ratio masks of the mixture's spectrogram, in ``waveform``'s layout:
  logits (batch, frames, bins, S * C), softmax over the sources, times the
  mixture's cac (batch, frames, bins, 2C) -> (batch, frames, bins, S * C * 2).

  The masks are real, so each source keeps the mixture's phase, and they sum
  to one over the sources, so the masked spectrograms sum to the mixture's."""
  batch, frames, bins, features = logits.shape
  channels = features // num_sources
  # (b, frames, bins, S * C) -> (b, frames, bins, S, C), softmax over S
  masks = jax.nn.softmax(
      logits.astype(jnp.float32).reshape(batch, frames, bins, num_sources, channels), axis=3)
  # (b, frames, bins, 2C) -> (b, frames, bins, 1, C, 2)
  mixture = cac.astype(jnp.float32).reshape(batch, frames, bins, 1, channels, 2)
  # (b, frames, bins, S, C, 1) * (b, frames, bins, 1, C, 2) -> (b, frames, bins, S * C * 2)
  return (masks[..., None] * mixture).reshape(batch, frames, bins, num_sources * channels * 2)


def _per_frame(block: nn.Module, x: jnp.ndarray, *more: jnp.ndarray) -> jnp.ndarray:
  """Runs a 1-D block over frequency, every frame a row:
  (batch, frames, bins, C) -> (batch * frames, bins, C) -> block -> back."""
  batch, frames = x.shape[:2]
  rows = lambda a: a.reshape(batch * frames, *a.shape[2:])
  out = block(rows(x), *map(rows, more))
  return out.reshape(batch, frames, *out.shape[1:])


class TimeContext(nn.Module):
  """Hybrid Demucs's ``DConv`` along time, for every bin of a spectral map:
  ``layers`` residual branches, each a kernel-3 conv over frames (dilation
  1, 2, 4...) to a quarter of the channels, GELU, a pointwise conv to twice
  the channels, GLU and LayerScale. Hybrid Demucs also normalises each conv
  (GroupNorm); our screening found no gain from GroupNorm, so it is left out.

  Attributes:
    layers: residual branches (Hybrid Demucs: 2).
    layer_scale_init: initial LayerScale of each branch (Hybrid Demucs: 1e-3).
    dtype: compute dtype.
  """
  layers: int
  layer_scale_init: float = 1e-3
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    # x: (batch, frames, bins, C) -> same shape
    frames, channels = x.shape[1], x.shape[-1]
    for layer in range(self.layers):
      dilation = 2 ** layer
      padded = jnp.pad(x, ((0, 0), (dilation, dilation), (0, 0), (0, 0)))
      # The conv as one matmul: frames t - d, t, t + d side by side, (..., 3C).
      taps = jnp.concatenate(
          [padded[:, j * dilation:j * dilation + frames] for j in range(3)], axis=-1)
      y = nn.gelu(nn.Dense(max(1, channels // 4), dtype=self.dtype, name=f"conv_{layer}")(taps))
      y = glu(nn.Dense(2 * channels, dtype=self.dtype, name=f"pointwise_{layer}")(y))
      scale = self.param(f"scale_{layer}", nn.initializers.constant(self.layer_scale_init),
                         (channels,))
      x = x + scale.astype(self.dtype) * y
    return x


def smooth_embedding_init(scale: float):
  """Hybrid Demucs's ``ScaledEmbedding(smooth=True)`` initialiser for a
  (positions, features) table: a running sum of unit normals along the
  positions, divided by sqrt(position), so that each row has unit variance
  and neighbouring rows are alike; stored divided by ``scale`` (the table is
  read multiplied by it, which scales its learning rate)."""
  def init(key, shape, dtype=jnp.float32):
    steps = jax.random.normal(key, shape, jnp.float32)
    smooth = jnp.cumsum(steps, axis=0) / jnp.sqrt(jnp.arange(1, shape[0] + 1))[:, None]
    return (smooth / scale).astype(dtype)
  return init


class FrequencyEmbedding(nn.Module):
  """Hybrid Demucs's frequency embedding: a learnt vector per bin, added to
  the first spectral block's output, so that the convolutions, shared over
  frequency, can act differently at different frequencies.

  Attributes:
    weight: factor on the embedding (Hybrid Demucs's ``freq_emb``: 0.2).
    scale: the table is stored divided by this and read multiplied by it,
      so that Adam moves it ``scale`` times faster (Hybrid Demucs: 10).
  """
  weight: float
  scale: float = 10.0

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    # x: (batch, frames, bins, C) -> same shape
    table = self.param("embedding", smooth_embedding_init(self.scale), x.shape[2:])
    return x + (self.weight * self.scale * table).astype(x.dtype)


class SpectralEncoder(nn.Module):
  """Encoder blocks along frequency, then the last map's bins folded into
  ``out_features`` channels at the bottleneck.

  Attributes:
    channels: output channels of each block, shallow to deep.
    settings: the waveform U-Net's block settings (kernel, stride, attention...).
    out_features: channels of the bottleneck the branch is added to.
    time_layers: ``TimeContext`` layers after each block; 0: none.
    freq_embedding: weight of a ``FrequencyEmbedding`` after the first
      block; 0: none.
  """
  channels: Sequence[int]
  settings: BlockSettings
  out_features: int
  time_layers: int = 0
  freq_embedding: float = 0.0

  @nn.compact
  def __call__(self, cac: jnp.ndarray) -> tuple[list[jnp.ndarray], jnp.ndarray]:
    # cac: (batch, frames, bins, 2C); each block divides bins by the stride.
    skips, x = [], cac.astype(self.settings.dtype)
    for index, channels in enumerate(self.channels):
      x = _per_frame(EncoderBlock(channels=channels, settings=self.settings,
                                  name=f"block_{index}"), x)
      if self.time_layers:
        x = TimeContext(self.time_layers, dtype=self.settings.dtype, name=f"time_{index}")(x)
      if index == 0 and self.freq_embedding:
        x = FrequencyEmbedding(self.freq_embedding, name="freq_embedding")(x)
      skips.append(x)
    batch, frames, bins, channels = x.shape
    # (batch, frames, bins, C) -> (batch, frames, bins * C) -> bottleneck width
    folded = nn.Dense(self.out_features, dtype=self.settings.dtype, name="fold")(
        x.reshape(batch, frames, bins * channels))
    return skips, folded


class SpectralDecoder(nn.Module):
  """Unfolds the shared bottleneck into bins, then decoder blocks along
  frequency with the spectral encoder's skips.

  Attributes:
    channels: the spectral encoder's channels, shallow to deep.
    out_channels: channels of the output spectrogram (sources * audio channels * 2).
    settings: the waveform U-Net's block settings.
  """
  channels: Sequence[int]
  out_channels: int
  settings: BlockSettings

  @nn.compact
  def __call__(self, x: jnp.ndarray, skips: Sequence[jnp.ndarray]) -> jnp.ndarray:
    # x: (batch, frames, C_bottleneck); skips[-1]: (batch, frames, bins, C_deep)
    batch, frames, bins, deep = skips[-1].shape
    x = nn.Dense(bins * deep, dtype=self.settings.dtype, name="unfold")(x)
    x = x.reshape(batch, frames, bins, deep)
    # Pointwise instead of the waveform decoder's kernel-3 conv: at the finest
    # bins it cost more than the rest of the branch.
    pointwise = dataclasses.replace(self.settings, decoder_kernel_size=1)
    for index in reversed(range(len(self.channels))):
      is_output = index == 0
      settings = (dataclasses.replace(pointwise, channel_attention=False) if is_output
                  else pointwise)
      block = DecoderBlock(
          upsample_channels=self.channels[max(index - 1, 0)],
          channels=self.out_channels if is_output else self.channels[index - 1],
          settings=settings, name=f"block_{index}")
      x = _per_frame(block, x, skips[index])
    return x  # (batch, frames, 2 * hop, out_channels)
