"""Decoder: upsampling blocks that mirror the encoder, with additive skips."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from attnsep_jax.models.attention import ChannelAttention, glu
from attnsep_jax.models.encoder import group_norm, same_length_padding
from attnsep_jax.models.layers import TransposedConv1d


class DecoderBlock(nn.Module):
  """Skip add -> transposed conv (upsampling) -> LeakyReLU -> Conv1d -> GLU.

  Attributes:
    upsample_channels: output channels of the transposed conv.
    channels: output channels of the block (after the GLU).
    kernel_size: width of the transposed conv, in output frames.
    stride: upsampling factor.
    decoder_kernel_size: width of the Conv1d after upsampling, in frames.
    leaky_relu_slope: negative slope of the LeakyReLU.
    norm_groups: GroupNorm groups after the transposed conv and the Conv1d
      (0: no normalisation).
    channel_attention: squeeze-excitation on the block's output.
    attention_reduction: channels / hidden width of the attention gate.
    dtype: compute dtype.
  """
  upsample_channels: int
  channels: int
  kernel_size: int = 8
  stride: int = 4
  decoder_kernel_size: int = 3
  leaky_relu_slope: float = 0.01
  norm_groups: int = 0
  channel_attention: bool = True
  attention_reduction: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, skip: jnp.ndarray) -> jnp.ndarray:
    # x, skip: (batch, frames, in_channels) -> (batch, frames * stride, channels)
    frames = x.shape[1]
    x = x + skip  # Demucs's additive skip: no channel growth, same alignment.
    x = TransposedConv1d(self.upsample_channels, self.kernel_size, self.stride,
                         dtype=self.dtype, name="upsample")(x)
    # (frames - 1) * stride + kernel_size samples; crop what the encoder
    # padded so that output sample t lines up with input sample t.
    left, _ = same_length_padding(self.kernel_size, self.stride)
    x = x[:, left:left + frames * self.stride]
    x = group_norm(self.norm_groups, self.dtype, "upsample_norm")(x)
    x = nn.leaky_relu(x, self.leaky_relu_slope)
    x = nn.Conv(2 * self.channels, (self.decoder_kernel_size,), padding="SAME",
                dtype=self.dtype, name="conv")(x)
    x = glu(group_norm(self.norm_groups, self.dtype, "conv_norm")(x))
    if self.channel_attention:
      x = ChannelAttention(self.attention_reduction, dtype=self.dtype,
                           name="channel_attention")(x)
    return x


class Decoder(nn.Module):
  """Mirror of the encoder; the last block emits ``out_channels`` at full rate.

  Attributes:
    channels: the encoder's channels, shallow to deep (the decoder runs deep
      to shallow).
    out_channels: channels of the final output (sources * audio channels).
    block: keyword arguments shared by every ``DecoderBlock`` (kernel sizes,
      stride, slopes, attention, dtype), except the channels and norm.
    norm_groups: GroupNorm groups in blocks ``norm_starts`` and deeper (the
      output block is never normalised).
    norm_starts: index of the first normalised block (the encoder's index).
  """
  channels: Sequence[int]
  out_channels: int
  block: dict
  norm_groups: int = 0
  norm_starts: int = 0

  @nn.compact
  def __call__(self, x: jnp.ndarray, skips: Sequence[jnp.ndarray]) -> jnp.ndarray:
    # x: (batch, bottleneck_frames, channels[-1]); skips shallow to deep.
    block = dict(self.block)
    channel_attention = block.pop("channel_attention")
    for index in reversed(range(len(self.channels))):
      is_output = index == 0
      x = DecoderBlock(
          upsample_channels=self.channels[max(index - 1, 0)],
          channels=self.out_channels if is_output else self.channels[index - 1],
          channel_attention=channel_attention and not is_output,
          norm_groups=self.norm_groups if index >= max(self.norm_starts, 1) else 0,
          **block, name=f"block_{index}")(x, skips[index])
    return x  # (batch, time, out_channels)
