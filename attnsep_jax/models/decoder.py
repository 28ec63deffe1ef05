"""Decoder: upsampling blocks that mirror the encoder, with additive skips."""

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from attnsep_jax.models.attention import ChannelAttention, glu
from attnsep_jax.models.encoder import BlockSettings, group_norm, same_length_padding
from attnsep_jax.models.layers import TransposedConv1d


class DecoderBlock(nn.Module):
  """Skip add -> transposed conv (upsampling) -> LeakyReLU -> Conv1d -> GLU.

  Attributes:
    upsample_channels: output channels of the transposed conv.
    channels: output channels of the block (after the GLU).
    settings: the shared kernel sizes, stride, slope, attention and dtype.
    norm_groups: GroupNorm groups after the transposed conv and the Conv1d
      (0: no normalisation).
  """
  upsample_channels: int
  channels: int
  settings: BlockSettings
  norm_groups: int = 0

  @nn.compact
  def __call__(self, x: jnp.ndarray, skip: jnp.ndarray) -> jnp.ndarray:
    s = self.settings
    # x, skip: (batch, frames, in_channels) -> (batch, frames * stride, channels)
    frames = x.shape[1]
    x = x + skip  # Demucs's additive skip: no channel growth, same alignment.
    x = TransposedConv1d(self.upsample_channels, s.kernel_size, s.stride,
                         dtype=s.dtype, name="upsample")(x)
    # (frames - 1) * stride + kernel_size samples; crop what the encoder
    # padded so that output sample t lines up with input sample t.
    left, _ = same_length_padding(s.kernel_size, s.stride)
    x = x[:, left:left + frames * s.stride]
    x = group_norm(self.norm_groups, s.dtype, "upsample_norm")(x)
    x = nn.leaky_relu(x, s.leaky_relu_slope)
    x = nn.Conv(2 * self.channels, (s.decoder_kernel_size,), padding="SAME",
                dtype=s.dtype, name="conv")(x)
    x = glu(group_norm(self.norm_groups, s.dtype, "conv_norm")(x))
    if s.channel_attention:
      x = ChannelAttention(s.attention_reduction, dtype=s.dtype, name="channel_attention")(x)
    return x


class Decoder(nn.Module):
  """Mirror of the encoder; the last block emits ``out_channels`` at full rate.

  Attributes:
    channels: the encoder's channels, shallow to deep (the decoder runs deep
      to shallow).
    out_channels: channels of the final output (sources * audio channels).
    settings: what every block shares (kernel sizes, stride, slope, attention,
      dtype); the output block has no channel attention.
    norm_groups: GroupNorm groups in blocks ``norm_starts`` and deeper (the
      output block is never normalised).
    norm_starts: index of the first normalised block (the encoder's index).
  """
  channels: Sequence[int]
  out_channels: int
  settings: BlockSettings
  norm_groups: int = 0
  norm_starts: int = 0

  @nn.compact
  def __call__(self, x: jnp.ndarray, skips: Sequence[jnp.ndarray]) -> jnp.ndarray:
    # x: (batch, bottleneck_frames, channels[-1]); skips shallow to deep.
    for index in reversed(range(len(self.channels))):
      is_output = index == 0
      settings = (dataclasses.replace(self.settings, channel_attention=False) if is_output
                  else self.settings)
      x = DecoderBlock(
          upsample_channels=self.channels[max(index - 1, 0)],
          channels=self.out_channels if is_output else self.channels[index - 1],
          settings=settings,
          norm_groups=self.norm_groups if index >= max(self.norm_starts, 1) else 0,
          name=f"block_{index}")(x, skips[index])
    return x  # (batch, time, out_channels)
