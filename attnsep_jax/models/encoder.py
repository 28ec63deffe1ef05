"""Encoder: downsampling blocks, densely connected within or across scales."""

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from attnsep_jax.models.attention import ChannelAttention, glu
from attnsep_jax.models.layers import DepthwiseConv1d

DENSE_CONNECTIONS = ("within_scale", "cross_scale", "none")


def dense_mode(value) -> str:
  """The ``dense_connections`` setting as a name; configs of version 0.1 used a
  bool (True: the cross-scale reading, False: none)."""
  if isinstance(value, bool):
    return "cross_scale" if value else "none"
  if value not in DENSE_CONNECTIONS:
    raise ValueError(f"dense_connections must be one of {DENSE_CONNECTIONS}, got {value!r}")
  return value


def same_length_padding(kernel_size: int, stride: int) -> tuple[int, int]:
  """Padding that makes a strided conv map ``L`` frames to exactly ``L / stride``.

  Centred, so that frame ``j`` looks at samples ``[j*stride - pad, ...)``; the
  decoder crops its transposed conv by the same amounts to stay aligned.
  """
  if kernel_size < stride:
    raise ValueError(f"kernel_size {kernel_size} must be >= stride {stride}")
  total = kernel_size - stride
  return total // 2, total - total // 2


def average_pool(x: jnp.ndarray, factor: int) -> jnp.ndarray:
  """Non-overlapping mean over time; frames must be a multiple of ``factor``."""
  if factor == 1:
    return x
  batch, frames, channels = x.shape
  # (batch, frames, channels) -> (batch, frames/factor, factor, channels)
  return x.reshape(batch, frames // factor, factor, channels).mean(axis=2)


def group_norm(groups: int, dtype: Any, name: str):
  """GroupNorm over time and channel groups (Demucs v3), or identity if ``groups`` is 0."""
  if not groups:
    return lambda x: x
  return nn.GroupNorm(num_groups=groups, dtype=dtype, name=name)


@dataclasses.dataclass(frozen=True)
class BlockSettings:
  """What every U-Net block shares, declared once and passed by name (the
  network's config holds the defaults).

  Attributes:
    kernel_size: width of the down/upsampling convs, in the faster rate's frames.
    stride: down/upsampling factor between neighbouring scales.
    depthwise_kernel_size: width of the encoder's depthwise conv, in frames.
    decoder_kernel_size: width of the decoder's conv after upsampling, in frames.
    leaky_relu_slope: negative slope of the LeakyReLUs.
    channel_attention: squeeze-excitation on each block's output.
    attention_reduction: channels / hidden width of the attention gate.
    dtype: compute dtype.
  """
  kernel_size: int
  stride: int
  depthwise_kernel_size: int
  decoder_kernel_size: int
  leaky_relu_slope: float
  channel_attention: bool
  attention_reduction: int
  dtype: Any


class EncoderBlock(nn.Module):
  """Conv1d (downsampling) -> GLU -> depthwise-separable conv -> LeakyReLU.

  With ``dense_layers`` > 1 the depthwise-separable conv + LeakyReLU is a
  DenseNet block at the block's own frame rate: layer ``i`` sees the
  concatenation of the GLU output and every earlier layer's output, and a
  1x1 transition maps the concatenation of all of them to ``channels``.

  Attributes:
    channels: output channels of the block.
    settings: the shared kernel sizes, stride, slope, attention and dtype.
    dense_layers: depthwise-separable layers, densely connected when > 1.
    norm_groups: GroupNorm groups after the downsampling and pointwise convs
      (0: no normalisation).
  """
  channels: int
  settings: BlockSettings
  dense_layers: int = 1
  norm_groups: int = 0

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    s = self.settings
    # x: (batch, frames, in_channels) -> (batch, frames / stride, channels)
    x = nn.Conv(2 * self.channels, (s.kernel_size,), strides=(s.stride,),
                padding=[same_length_padding(s.kernel_size, s.stride)],
                dtype=s.dtype, name="downsample")(x)
    x = glu(group_norm(self.norm_groups, s.dtype, "downsample_norm")(x))
    features = [x]
    for index in range(self.dense_layers):
      suffix = "" if self.dense_layers == 1 else f"_{index}"
      h = jnp.concatenate(features, axis=-1) if index else x
      h = DepthwiseConv1d(s.depthwise_kernel_size, dtype=s.dtype,
                          name=f"depthwise{suffix}")(h)
      h = nn.Dense(self.channels, dtype=s.dtype, name=f"pointwise{suffix}")(h)
      h = group_norm(self.norm_groups, s.dtype, f"pointwise_norm{suffix}")(h)
      features.append(nn.leaky_relu(h, s.leaky_relu_slope))
    x = features[-1]
    if self.dense_layers > 1:
      x = nn.Dense(self.channels, dtype=s.dtype, name="transition")(
          jnp.concatenate(features, axis=-1))
    if s.channel_attention:
      x = ChannelAttention(s.attention_reduction, dtype=s.dtype, name="channel_attention")(x)
    return x


class Encoder(nn.Module):
  """Stack of encoder blocks; returns every block's output (the skips).

  ``dense_connections`` selects how the U-Net is densely connected:
  "within_scale" (DenseNet, MMDenseNet, D3Net: dense blocks of
  ``dense_layers`` layers inside each encoder block, at one frame rate),
  "cross_scale" (each block's input is the previous output concatenated with
  every earlier feature map, the waveform included, average-pooled to the
  block's frame rate) or "none" (a plain U-Net encoder).

  Attributes:
    channels: output channels of each block, shallow to deep.
    settings: what every block shares (kernel sizes, stride, slope, attention, dtype).
    dense_connections: "within_scale", "cross_scale" or "none".
    dense_layers: layers of each within-scale dense block.
    norm_groups: GroupNorm groups in blocks ``norm_starts`` and deeper.
    norm_starts: index of the first normalised block.
  """
  channels: Sequence[int]
  settings: BlockSettings
  dense_connections: str = "within_scale"
  dense_layers: int = 2
  norm_groups: int = 0
  norm_starts: int = 0

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> list[jnp.ndarray]:
    # x: (batch, time, audio_channels), time a multiple of stride**depth.
    stride = self.settings.stride
    mode = dense_mode(self.dense_connections)
    features = [x]
    for index, channels in enumerate(self.channels):
      if mode == "cross_scale" and index > 0:
        inputs = [average_pool(f, stride ** (len(features) - 1 - k))
                  for k, f in enumerate(features)]
        block_input = jnp.concatenate(inputs, axis=-1)
      else:
        block_input = features[-1]
      features.append(EncoderBlock(
          channels=channels, settings=self.settings,
          dense_layers=self.dense_layers if mode == "within_scale" else 1,
          norm_groups=self.norm_groups if index >= self.norm_starts else 0,
          name=f"block_{index}")(block_input))
    return features[1:]
