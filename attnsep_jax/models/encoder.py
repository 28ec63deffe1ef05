"""Encoder: downsampling blocks with optional dense connections across scales."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from attnsep_jax.models.attention import ChannelAttention, glu
from attnsep_jax.models.layers import DepthwiseConv1d


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


class EncoderBlock(nn.Module):
  """Conv1d (downsampling) -> GLU -> depthwise-separable conv -> LeakyReLU.

  Attributes:
    channels: output channels of the block.
    kernel_size: width of the downsampling conv, in input frames.
    stride: downsampling factor (input frames per output frame).
    depthwise_kernel_size: width of the depthwise conv, in output frames.
    leaky_relu_slope: negative slope of the LeakyReLU.
    channel_attention: apply squeeze-excitation to the block's output.
    attention_reduction: channels / hidden width of the attention gate.
    dtype: compute dtype.
  """
  channels: int
  kernel_size: int = 8
  stride: int = 4
  depthwise_kernel_size: int = 3
  leaky_relu_slope: float = 0.01
  channel_attention: bool = True
  attention_reduction: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    # x: (batch, frames, in_channels) -> (batch, frames / stride, channels)
    x = nn.Conv(2 * self.channels, (self.kernel_size,), strides=(self.stride,),
                padding=[same_length_padding(self.kernel_size, self.stride)],
                dtype=self.dtype, name="downsample")(x)
    x = glu(x)
    x = DepthwiseConv1d(self.depthwise_kernel_size, dtype=self.dtype,
                        name="depthwise")(x)
    x = nn.Dense(self.channels, dtype=self.dtype, name="pointwise")(x)
    x = nn.leaky_relu(x, self.leaky_relu_slope)
    if self.channel_attention:
      x = ChannelAttention(self.attention_reduction, dtype=self.dtype,
                           name="channel_attention")(x)
    return x


class Encoder(nn.Module):
  """Stack of encoder blocks; returns every block's output (the skips).

  With ``dense_connections`` each block's input is the concatenation of the
  previous block's output with every earlier feature map (the input
  included), average-pooled to the current frame rate: DenseNet's
  connectivity (Huang et al., 2017) carried across the U-Net's scales, as in
  MMDenseNet/D3Net, so deep blocks see the fine-scale detail directly.

  Attributes:
    channels: output channels of each block, shallow to deep.
    kernel_size: downsampling conv width, in frames.
    stride: downsampling factor per block.
    depthwise_kernel_size: depthwise conv width, in frames.
    leaky_relu_slope: negative slope of the LeakyReLU.
    dense_connections: feed every earlier scale into each block.
    channel_attention: squeeze-excitation on each block's output.
    attention_reduction: channels / hidden width of the attention gate.
    dtype: compute dtype.
  """
  channels: Sequence[int]
  kernel_size: int = 8
  stride: int = 4
  depthwise_kernel_size: int = 3
  leaky_relu_slope: float = 0.01
  dense_connections: bool = True
  channel_attention: bool = True
  attention_reduction: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> list[jnp.ndarray]:
    # x: (batch, time, audio_channels), time a multiple of stride**depth.
    features = [x]
    for index, channels in enumerate(self.channels):
      if self.dense_connections and index > 0:
        inputs = [average_pool(f, self.stride ** (len(features) - 1 - k))
                  for k, f in enumerate(features)]
        block_input = jnp.concatenate(inputs, axis=-1)
      else:
        block_input = features[-1]
      features.append(EncoderBlock(
          channels, self.kernel_size, self.stride, self.depthwise_kernel_size,
          self.leaky_relu_slope, self.channel_attention,
          self.attention_reduction, dtype=self.dtype,
          name=f"block_{index}")(block_input))
    return features[1:]
