"""Dual-path transformer separator (DPTNet, Chen et al. 2020) and segmentation."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from attnsep_jax.models.lstm import BiLSTM


def segment(x: jnp.ndarray, chunk_frames: int, hop_frames: int) -> jnp.ndarray:
  """Splits a sequence into overlapping chunks: (b, frames, d) -> (b, chunks, K, d).

  Zero padding of ``K - P`` frames on both sides (plus up to ``P - 1`` to
  reach a whole hop) puts every real frame in exactly ``K / P`` chunks, so
  ``overlap_add`` is an exact inverse, edges included.
  """
  if chunk_frames % hop_frames:
    raise ValueError(
        f"chunk_frames ({chunk_frames}) must be a multiple of hop_frames ({hop_frames})")
  batch, frames, dim = x.shape
  overlap = chunk_frames - hop_frames
  extra = (-frames) % hop_frames
  x = jnp.pad(x, ((0, 0), (overlap, overlap + extra), (0, 0)))
  blocks = x.shape[1] // hop_frames
  # (b, padded, d) -> (b, blocks, P, d): a chunk is K/P consecutive blocks.
  x = x.reshape(batch, blocks, hop_frames, dim)
  per_chunk = chunk_frames // hop_frames
  num_chunks = blocks - per_chunk + 1
  return jnp.concatenate(
      [x[:, j:j + num_chunks] for j in range(per_chunk)], axis=2)


def overlap_add(chunks: jnp.ndarray, frames: int, hop_frames: int) -> jnp.ndarray:
  """Inverse of ``segment``: (b, chunks, K, d) -> (b, frames, d), averaging overlaps."""
  batch, num_chunks, chunk_frames, dim = chunks.shape
  per_chunk = chunk_frames // hop_frames
  # (b, chunks, K, d) -> (b, chunks, K/P, P, d)
  pieces = chunks.reshape(batch, num_chunks, per_chunk, hop_frames, dim)
  total = sum(
      jnp.pad(pieces[:, :, j], ((0, 0), (j, per_chunk - 1 - j), (0, 0), (0, 0)))
      for j in range(per_chunk))
  # (b, blocks, P, d) -> (b, padded, d)
  total = total.reshape(batch, -1, dim) / per_chunk
  overlap = chunk_frames - hop_frames
  return total[:, overlap:overlap + frames]


def sinusoidal_encoding(length: int, dim: int) -> np.ndarray:
  """Transformer positional encoding (Vaswani et al., 2017): (length, dim)."""
  position = np.arange(length)[:, None]
  rates = np.exp(-np.log(10000.0) * (np.arange(0, dim, 2) / dim))
  table = np.zeros((length, dim), np.float32)
  table[:, 0::2] = np.sin(position * rates)
  table[:, 1::2] = np.cos(position * rates)[:, : dim // 2]
  return table


@dataclasses.dataclass(frozen=True)
class TransformerSettings:
  """What the transformer layers of a separator share, declared once (the
  network's config holds the defaults).

  Attributes:
    dim: feature width.
    num_heads: attention heads (dim must divide by it).
    ffn: "bilstm" (DPTNet) or "linear" (the vanilla transformer's FFN).
    ffn_hidden: LSTM units per direction, or the linear FFN's width.
    positional_encoding: "none" or "sinusoidal" (added to the layer input).
    norm: "post" (DPTNet) or "pre" (HT Demucs).
    layer_scale_init: initial LayerScale of each residual branch (pre-norm
      only); 0 disables it.
    dropout_rate: dropout on the attention and FFN outputs.
    dtype: compute dtype.
  """
  dim: int
  num_heads: int
  ffn: str
  ffn_hidden: int
  positional_encoding: str
  norm: str
  layer_scale_init: float
  dropout_rate: float
  dtype: Any


class TransformerLayer(nn.Module):
  """DPTNet's improved transformer layer.

  Post-norm (DPTNet): x = norm(x + MHA(x)); x = norm(x + Linear(ReLU(BiLSTM(x)))).
  Pre-norm (HT Demucs): x = x + s * MHA(norm(x)); x = x + s * FFN(norm(x)),
  with a learned per-channel LayerScale ``s`` (CaiT) when
  ``layer_scale_init`` is set.  The BiLSTM replaces the first linear layer of
  the feed-forward network and gives the layer its sense of order, so no
  positional encoding is needed.

  Attributes:
    settings: width, heads, feed-forward, norm placement... (TransformerSettings).
  """
  settings: TransformerSettings

  def _attention(self, x, deterministic):
    s = self.settings
    attended = nn.MultiHeadDotProductAttention(
        num_heads=s.num_heads, qkv_features=s.dim, out_features=s.dim,
        dropout_rate=s.dropout_rate, deterministic=deterministic,
        dtype=s.dtype, name="attention")(x, x)
    return nn.Dropout(s.dropout_rate)(attended, deterministic=deterministic)

  def _feed_forward(self, x, deterministic):
    s = self.settings
    if s.ffn == "bilstm":
      hidden = BiLSTM(s.ffn_hidden, dtype=s.dtype, name="ffn_bilstm")(x)
    elif s.ffn == "linear":
      hidden = nn.Dense(s.ffn_hidden, dtype=s.dtype, name="ffn_linear")(x)
    else:
      raise ValueError(f"unknown ffn {s.ffn!r}")
    hidden = nn.Dense(s.dim, dtype=s.dtype, name="ffn_out")(nn.relu(hidden))
    return nn.Dropout(s.dropout_rate)(hidden, deterministic=deterministic)

  def _scale(self, x, name):
    s = self.settings
    if not s.layer_scale_init:
      return x
    scale = self.param(name, nn.initializers.constant(s.layer_scale_init), (s.dim,))
    return x * scale.astype(x.dtype)

  @nn.compact
  def __call__(self, x: jnp.ndarray, deterministic: bool = True) -> jnp.ndarray:
    # x: (sequences, length, dim)
    s = self.settings
    if s.positional_encoding == "sinusoidal":
      x = x + sinusoidal_encoding(x.shape[1], s.dim).astype(x.dtype)
    elif s.positional_encoding != "none":
      raise ValueError(f"unknown positional_encoding {s.positional_encoding!r}")
    norm = lambda name: nn.LayerNorm(dtype=s.dtype, name=name)
    if s.norm == "post":
      x = norm("attention_norm")(x + self._attention(x, deterministic))
      return norm("ffn_norm")(x + self._feed_forward(x, deterministic))
    if s.norm != "pre":
      raise ValueError(f"norm must be 'post' or 'pre', got {s.norm!r}")
    x = x + self._scale(self._attention(norm("attention_norm")(x), deterministic),
                        "attention_scale")
    return x + self._scale(self._feed_forward(norm("ffn_norm")(x), deterministic),
                           "ffn_scale")


class DualPathBlock(nn.Module):
  """Intra-chunk transformer (over K, local) then inter-chunk (over S, global).

  Attributes:
    layer: the settings of both transformer layers.
  """
  layer: TransformerSettings

  @nn.compact
  def __call__(self, x: jnp.ndarray, deterministic: bool = True) -> jnp.ndarray:
    batch, num_chunks, chunk_frames, dim = x.shape
    # (b, S, K, d) -> (b*S, K, d): attention within each chunk.
    x = TransformerLayer(self.layer, name="intra")(
        x.reshape(batch * num_chunks, chunk_frames, dim), deterministic)
    x = x.reshape(batch, num_chunks, chunk_frames, dim)
    # (b, S, K, d) -> (b*K, S, d): attention across chunks at each position.
    x = x.transpose(0, 2, 1, 3).reshape(batch * chunk_frames, num_chunks, dim)
    x = TransformerLayer(self.layer, name="inter")(x, deterministic)
    # (b*K, S, d) -> (b, S, K, d)
    return x.reshape(batch, chunk_frames, num_chunks, dim).transpose(0, 2, 1, 3)


class DualPathSeparator(nn.Module):
  """Projection -> segmentation -> B dual-path blocks -> overlap-add -> projection.

  Residual around the whole separator, so that removing it (the "none"
  ablation) leaves a plain U-Net rather than a different network.

  Attributes:
    layer: the transformer layers' settings; ``layer.dim`` is the width
      inside the separator (projected from the bottleneck).
    num_blocks: B, the number of dual-path blocks.
    chunk_frames: K, chunk length in bottleneck frames.
    hop_frames: P, hop between chunks in bottleneck frames (divides K).
    remat: recompute each block in the backward pass to save memory.
  """
  layer: TransformerSettings
  num_blocks: int
  chunk_frames: int
  hop_frames: int
  remat: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, deterministic: bool = True) -> jnp.ndarray:
    # x: (batch, frames, channels)
    frames, channels = x.shape[1], x.shape[2]
    dtype = self.layer.dtype
    h = nn.LayerNorm(dtype=dtype, name="input_norm")(x)
    h = nn.Dense(self.layer.dim, dtype=dtype, name="input_projection")(h)
    h = segment(h, self.chunk_frames, self.hop_frames)   # (b, S, K, dim)
    block = nn.remat(DualPathBlock, static_argnums=(2,)) if self.remat else DualPathBlock
    for index in range(self.num_blocks):
      h = block(self.layer, name=f"block_{index}")(h, deterministic)
    if self.layer.norm == "pre":  # the residual stream of pre-norm layers is unnormalised
      h = nn.LayerNorm(dtype=dtype, name="output_norm")(h)
    h = overlap_add(h, frames, self.hop_frames)          # (b, frames, dim)
    h = nn.Dense(channels, dtype=dtype, name="output_projection")(h)
    return x + h


class BiLSTMSeparator(nn.Module):
  """Demucs v2's bottleneck: stacked BiLSTMs and a linear layer, residual.

  Attributes:
    dim: LSTM units per direction (and the projection width).
    num_layers: stacked BiLSTM layers (Demucs v2 uses 2).
    dtype: compute dtype.
  """
  dim: int = 256
  num_layers: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, deterministic: bool = True) -> jnp.ndarray:
    del deterministic
    h = nn.Dense(self.dim, dtype=self.dtype, name="input_projection")(x)
    for index in range(self.num_layers):
      h = BiLSTM(self.dim, dtype=self.dtype, name=f"bilstm_{index}")(h)
    return x + nn.Dense(x.shape[-1], dtype=self.dtype, name="output_projection")(h)
