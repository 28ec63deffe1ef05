"""Channel attention (squeeze-and-excitation) and the GLU used by every block."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


def glu(x: jnp.ndarray) -> jnp.ndarray:
  """Gated linear unit over the last (channel) axis: (..., 2C) -> (..., C)."""
  value, gate = jnp.split(x, 2, axis=-1)
  return value * nn.sigmoid(gate)


class ChannelAttention(nn.Module):
  """Squeeze-and-excitation channel attention (Hu et al., 2018).

  Re-weights the channels of a block's feature map with gates computed from
  its global average over time, so each layer can emphasise the channels
  that carry the instruments present in the excerpt.

  Attributes:
    reduction: ratio of channels to the hidden width of the gate MLP.
    min_hidden: lower bound on that hidden width, for narrow layers.
    dtype: compute dtype.
  """
  reduction: int = 8
  min_hidden: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    # x: (batch, frames, channels)
    channels = x.shape[-1]
    hidden = max(channels // self.reduction, self.min_hidden)
    squeezed = jnp.mean(x.astype(jnp.float32), axis=1)       # (batch, channels)
    gate = nn.Dense(hidden, dtype=self.dtype, name="squeeze")(squeezed)
    gate = nn.relu(gate)
    gate = nn.Dense(channels, dtype=self.dtype, name="excite")(gate)
    gate = nn.sigmoid(gate.astype(jnp.float32)).astype(x.dtype)
    return x * gate[:, None, :]
