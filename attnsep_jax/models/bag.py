"""A bag of separators: networks trained apart whose stems are averaged.

Demucs ships its models as bags (``demucs.apply.BagOfModels``): several
networks trained with other seeds, each separating the mixture, their stems
averaged.  Ours averages the networks' stems and then runs the post-filter
once, on the average, so that one soft mask and one Wiener filter see the
bag's estimate rather than each member's.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from attnsep_jax import masking
from attnsep_jax.models.network import AttnSepNet, build_model


class Bag(nn.Module):
  """Averages the stems of networks of one architecture.

  Maps a mixture ``(batch, time, audio_channels)`` to stems ``(batch,
  num_sources, time, audio_channels)`` as ``AttnSepNet`` does; its
  parameters are ``{"members_0": ..., "members_1": ...}``, one network's
  each.

  Attributes:
    members: the networks, each without a soft mask of its own.
    soft_mask_power: p > 0: the average's stems become ratio masks of the
      mixture's STFT (as ``AttnSepNet.soft_mask_power``); 0: the average.
    soft_mask_fft_size: that STFT's window, in samples.
    wiener_iterations: with the soft mask, iterations of the multichannel
      Wiener filter after it.
  """
  members: Sequence[AttnSepNet]
  soft_mask_power: float = 0.0
  soft_mask_fft_size: int = 8192
  wiener_iterations: int = 0

  @property
  def num_sources(self) -> int:
    return self.members[0].num_sources

  @property
  def audio_channels(self) -> int:
    return self.members[0].audio_channels

  @property
  def total_stride(self) -> int:
    return self.members[0].total_stride

  def valid_length(self, time: int) -> int:
    return self.members[0].valid_length(time)

  def __call__(self, mixture: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    stems = sum(member(mixture, train) for member in self.members) / len(self.members)
    if self.soft_mask_power:
      stems = masking.soft_mask(mixture, stems, self.soft_mask_power,
                                self.soft_mask_fft_size, self.wiener_iterations)
    return stems


def build_bag(model_config, size: int) -> Bag:
  """``size`` networks of ``config.model`` in a Bag.

  A network trained through the soft mask (``model.soft_mask_power`` > 0)
  keeps that stage, moved from each member to the bag's average.
  """
  member = build_model(model_config)
  post_filter = dict(soft_mask_power=member.soft_mask_power,
                     soft_mask_fft_size=member.soft_mask_fft_size,
                     wiener_iterations=member.wiener_iterations)
  member = member.clone(soft_mask_power=0.0, wiener_iterations=0)
  return Bag(members=tuple(member.clone() for _ in range(size)), **post_filter)


def member_key(index: int) -> str:
  """The name of member ``index``'s parameters in a Bag's tree (Flax's naming
  of a tuple of submodules)."""
  return f"members_{index}"


def bag_params(member_params: Sequence) -> dict:
  """One parameter tree for a Bag from its members' trees, in order."""
  return {member_key(i): params for i, params in enumerate(member_params)}
