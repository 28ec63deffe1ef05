"""The separation network: normalise -> encoder -> separator -> decoder -> stems."""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from attnsep_jax import masking
from attnsep_jax.models.decoder import Decoder
from attnsep_jax.models.dual_path import (BiLSTMSeparator, DualPathSeparator,
                                          TransformerSettings)
from attnsep_jax.models import spectral
from attnsep_jax.models.encoder import BlockSettings, Encoder

SEPARATORS = ("dual_path", "bilstm", "none")


class AttnSepNet(nn.Module):
  """Attention-based time-domain U-Net separator (Wang et al., 2023).

  Maps a mixture ``(batch, time, audio_channels)`` to stems
  ``(batch, num_sources, time, audio_channels)`` for any ``time``: the input
  is zero-padded to a multiple of ``stride ** len(channels)`` and the output
  trimmed back.  See docs/architecture.md for the reasons behind each default.

  Attributes:
    num_sources: stems produced (4: drums, bass, other, vocals).
    audio_channels: channels of the mixture and of each stem (2, stereo).
    channels: encoder block widths, shallow to deep (paper: 32 ... 1024).
    kernel_size: encoder/decoder (transposed) conv width, in frames.
    stride: down/upsampling factor per block.
    depthwise_kernel_size: encoder depthwise conv width, in frames.
    decoder_kernel_size: decoder Conv1d width, in frames.
    leaky_relu_slope: negative slope of every LeakyReLU.
    dense_connections: "within_scale" (dense blocks inside each encoder
      block, as DenseNet/MMDenseNet/D3Net), "cross_scale" (every earlier
      scale, pooled, feeds each block) or "none"; True/False of version 0.1
      configs read as "cross_scale"/"none".
    dense_layers: layers of each within-scale dense block.
    norm_groups: GroupNorm groups in the U-Net blocks from ``norm_starts``
      on (Demucs v3); 0 for none (the paper names no normalisation).
    norm_starts: index of the first U-Net level with GroupNorm.
    rescale_init: Demucs' weight rescaling at initialisation: every conv's
      weights in both U-Nets are divided by sqrt(std / rescale_init); 0
      disables it.
    spectral_channels: widths of a spectral branch (Hybrid Demucs): the same
      blocks along the frequency axis of the mixture's STFT (hop: the total
      stride), one per waveform block, meeting the waveform branch at the
      bottleneck and adding their inverse STFT to its stems; () for none
      (the paper's time-domain network).
    spectral_output: the spectral branch also decodes stems of its own;
      False: it only feeds the bottleneck (a spectral front end, a third of
      the branch's cost).
    spectral_mask: the spectral branch's stems are ratio masks of the
      mixture's STFT (softmax over the sources, as Open-Unmix's masks)
      instead of complex spectrograms (Hybrid Demucs's "complex as
      channels"); half the output channels.
    spectral_bins: STFT bins the spectral branch sees and writes, from 0 Hz
      up (a multiple of the total stride); the waveform branch alone covers
      the bins above. 0: all ``2 * total_stride`` below Nyquist.
    spectral_time_layers: residual dilated convolutions along time after
      each spectral encoder block (Hybrid Demucs's ``DConv``: 2); 0: none,
      the separator gives the branch its only time context.
    spectral_freq_embedding: weight of Hybrid Demucs's frequency embedding,
      a learnt vector per bin added after the first spectral block (Hybrid
      Demucs: 0.2); 0: none, the convolutions are blind to which bin they are at.
    channel_attention: squeeze-excitation on every block's feature map.
    attention_reduction: channels / hidden width of the attention gates.
    separator: "dual_path" (paper), "bilstm" (Demucs v2) or "none".
    separator_dim: feature width inside the separator.
    num_dual_path_blocks: B, dual-path transformer blocks.
    chunk_frames: K, chunk length in bottleneck frames.
    hop_frames: P, hop between chunks in bottleneck frames.
    num_heads: attention heads in each transformer layer.
    ffn: transformer feed-forward, "bilstm" (paper/DPTNet) or "linear".
    ffn_hidden: LSTM units per direction (or linear width) of the FFN.
    positional_encoding: "none" (paper) or "sinusoidal".
    separator_norm: transformer layers "post" (DPTNet) or "pre"-norm (HT Demucs).
    layer_scale_init: LayerScale of the pre-norm residual branches; 0: none.
    dropout_rate: dropout inside the separator (training only).
    normalize_input: standardise by the mixture's mono mean/std, undo at the
      output (Demucs), so the model is blind to the input level.
    mixture_consistency: project the stems so that they sum to the mixture
      (Wisdom et al., 2019: the residual is shared equally); off in the paper.
    soft_mask_power: p > 0: the stems become ratio masks |S_j|^p / sum |S_k|^p
      of the mixture's STFT inside the network, so that training scores the
      masked stems (the inference post-filter, learnt through); 0: off (paper).
    soft_mask_fft_size: that STFT's window, in samples.
    wiener_iterations: with the soft mask, that many iterations of the
      multichannel Wiener filter (Open-Unmix's, ``masking.wiener_refine``)
      refine the masked stems with each stem's place in the stereo image;
      0: the masks alone.
    remat_separator: rematerialise dual-path blocks in the backward pass.
    dtype: compute dtype name ("float32" or "bfloat16"); params stay float32.
  """
  num_sources: int = 4
  audio_channels: int = 2
  channels: Sequence[int] = (32, 64, 128, 256, 512, 1024)
  kernel_size: int = 8
  stride: int = 4
  depthwise_kernel_size: int = 3
  decoder_kernel_size: int = 3
  leaky_relu_slope: float = 0.01
  dense_connections: Any = "within_scale"
  dense_layers: int = 2
  norm_groups: int = 0
  norm_starts: int = 0
  rescale_init: float = 0.0
  spectral_channels: Sequence[int] = ()
  spectral_output: bool = True
  spectral_mask: bool = False
  spectral_time_layers: int = 0
  spectral_bins: int = 0
  spectral_freq_embedding: float = 0.0
  channel_attention: bool = True
  attention_reduction: int = 8
  separator: str = "dual_path"
  separator_dim: int = 256
  num_dual_path_blocks: int = 6
  chunk_frames: int = 16
  hop_frames: int = 8
  num_heads: int = 8
  ffn: str = "bilstm"
  ffn_hidden: int = 256
  positional_encoding: str = "none"
  separator_norm: str = "post"
  layer_scale_init: float = 0.0
  dropout_rate: float = 0.0
  normalize_input: bool = True
  mixture_consistency: bool = False
  soft_mask_power: float = 0.0
  soft_mask_fft_size: int = 8192
  wiener_iterations: int = 0
  remat_separator: bool = False
  dtype: str = "float32"

  @property
  def total_stride(self) -> int:
    return self.stride ** len(self.channels)

  def valid_length(self, time: int) -> int:
    """Smallest length >= ``time`` that the U-Net maps to itself exactly."""
    return max(1, math.ceil(time / self.total_stride)) * self.total_stride

  @nn.compact
  def __call__(self, mixture: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    if mixture.ndim != 3 or mixture.shape[-1] != self.audio_channels:
      raise ValueError(
          f"expected a mixture of shape (batch, time, {self.audio_channels}), got "
          f"{tuple(mixture.shape)}; convert mono to stereo first "
          "(attnsep_jax.audio reads files as stereo)")
    if mixture.shape[1] == 0:
      raise ValueError("cannot separate an empty mixture (time == 0)")
    if self.separator not in SEPARATORS:
      raise ValueError(f"separator must be one of {SEPARATORS}, got {self.separator!r}")
    dtype = jnp.dtype(self.dtype)
    batch, time, audio_channels = mixture.shape
    x = mixture.astype(jnp.float32)
    if self.normalize_input:
      mono = x.mean(axis=-1)                               # (batch, time)
      mean = mono.mean(axis=1)[:, None, None]              # (batch, 1, 1)
      std = mono.std(axis=1)[:, None, None]
      x = (x - mean) / (1e-5 + std)
    x = jnp.pad(x, ((0, 0), (0, self.valid_length(time) - time), (0, 0)))
    x = x.astype(dtype)

    settings = BlockSettings(
        kernel_size=self.kernel_size, stride=self.stride,
        depthwise_kernel_size=self.depthwise_kernel_size,
        decoder_kernel_size=self.decoder_kernel_size, leaky_relu_slope=self.leaky_relu_slope,
        channel_attention=self.channel_attention,
        attention_reduction=self.attention_reduction, dtype=dtype)
    norm = dict(norm_groups=self.norm_groups, norm_starts=self.norm_starts)
    skips = Encoder(self.channels, settings, dense_connections=self.dense_connections,
                    dense_layers=self.dense_layers, **norm, name="encoder")(x)
    if self.spectral_channels:
      cac, spectral_skips, folded = self._spectral_encoder(x, settings)
      skips = [*skips[:-1], skips[-1] + folded]
    x = skips[-1]                                          # (batch, frames, C_N)
    if self.separator == "dual_path":
      layer = TransformerSettings(
          dim=self.separator_dim, num_heads=self.num_heads, ffn=self.ffn,
          ffn_hidden=self.ffn_hidden, positional_encoding=self.positional_encoding,
          norm=self.separator_norm, layer_scale_init=self.layer_scale_init,
          dropout_rate=self.dropout_rate, dtype=dtype)
      x = DualPathSeparator(
          layer, num_blocks=self.num_dual_path_blocks, chunk_frames=self.chunk_frames,
          hop_frames=self.hop_frames, remat=self.remat_separator,
          name="separator")(x, not train)
    elif self.separator == "bilstm":
      x = BiLSTMSeparator(self.separator_dim, dtype=dtype, name="separator")(x)
    shared = x
    x = Decoder(self.channels, self.num_sources * audio_channels, settings, **norm,
                name="decoder")(x, skips)
    if self.spectral_channels and self.spectral_output:
      per_source = audio_channels if self.spectral_mask else 2 * audio_channels
      spec = spectral.SpectralDecoder(
          tuple(self.spectral_channels), self.num_sources * per_source, settings,
          name="spectral_decoder")(shared, spectral_skips)   # (batch, frames, bins, S*per_source)
      if self.spectral_mask:
        spec = spectral.masked_mixture(spec, cac, self.num_sources)  # (..., S*C*2)
      x = x + spectral.waveform(spec, self.total_stride, self.num_sources).astype(x.dtype)
    x = x[:, :time].astype(jnp.float32)                    # (batch, time, S*C)
    # (batch, time, S*C) -> (batch, S, time, C)
    x = x.reshape(batch, time, self.num_sources, audio_channels).transpose(0, 2, 1, 3)
    if self.normalize_input:
      x = x * (1e-5 + std[:, None]) + mean[:, None]
    if self.mixture_consistency:
      # Share what the stems leave of the mixture equally among them.
      residual = mixture.astype(jnp.float32) - x.sum(axis=1)   # (batch, time, C)
      x = x + residual[:, None] / self.num_sources
    if self.soft_mask_power:
      x = masking.soft_mask(mixture, x, self.soft_mask_power, self.soft_mask_fft_size,
                            self.wiener_iterations)
    return x


  def _spectral_encoder(self, x, settings):
    """The mixture's spectrogram (batch, frames, bins, 2C), the spectral
    branch's skips and its bottleneck map (batch, frames, C_N)."""
    if len(self.spectral_channels) != len(self.channels):
      raise ValueError(
          f"spectral_channels needs one width per waveform block ({len(self.channels)}), "
          f"got {len(self.spectral_channels)}: the branches meet at the bottleneck")
    bins = self.spectral_bins or 2 * self.total_stride
    if bins > 2 * self.total_stride or bins % self.total_stride:
      raise ValueError(
          f"spectral_bins must be a multiple of the total stride {self.total_stride} "
          f"up to {2 * self.total_stride} (each block divides the bins by {self.stride}), "
          f"got {self.spectral_bins}")
    cac = spectral.complex_as_channels(x, self.total_stride, bins)  # (batch, frames, bins, 2C)
    skips, folded = spectral.SpectralEncoder(
        tuple(self.spectral_channels), settings, self.channels[-1],
        time_layers=self.spectral_time_layers, freq_embedding=self.spectral_freq_embedding,
        name="spectral_encoder")(cac)
    return cac, skips, folded


def build_model(model_config) -> AttnSepNet:
  """``AttnSepNet(**config.model)``, with config tuples/lists normalised."""
  kwargs = dict(model_config)
  kwargs["channels"] = tuple(kwargs["channels"])
  kwargs["spectral_channels"] = tuple(kwargs.get("spectral_channels", ()))
  return AttnSepNet(**kwargs)


def init_params(model: AttnSepNet, rng: jax.Array, time: int = 4096, batch: int = 1):
  """Initialises parameters on a short dummy input (shapes do not depend on it)."""
  dummy = jnp.zeros((batch, model.valid_length(time), model.audio_channels))
  params = model.init(rng, dummy)["params"]
  if model.rescale_init:
    params = rescale_conv_weights(params, model.rescale_init)
  return params


# The parameter collections of the U-Nets' conv blocks, both branches.
U_NETS = ("encoder", "decoder", "spectral_encoder", "spectral_decoder")


def rescale_conv_weights(params, reference: float):
  """Demucs' ``rescale_module``: each U-Net conv kernel ``w``, in both
  branches (Hybrid Demucs's covers its 2-D spectral convs too), becomes
  ``w / sqrt(std(w) / reference)``, pulling every layer's weight scale
  towards ``reference``; Défossez et al. (2019) found it trains better.
  Biases start at zero, so only kernels change; the channel-attention gates
  (linear layers in Demucs' terms) are left as they are."""
  def rescale(path, leaf):
    names = [str(getattr(k, "key", k)) for k in path]
    is_conv = (names[0] in U_NETS and names[-1] == "kernel"
               and "channel_attention" not in names)
    return leaf / jnp.sqrt(jnp.std(leaf) / reference) if is_conv else leaf
  return jax.tree_util.tree_map_with_path(rescale, params)


def abstract_params(model: AttnSepNet):
  """Parameter shapes without computing anything (``jax.eval_shape``)."""
  return jax.eval_shape(lambda rng: init_params(model, rng), jax.random.key(0))


def count_params(params) -> int:
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))
