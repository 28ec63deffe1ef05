"""Ablation: stems projected to sum to the mixture (Wisdom et al., 2019), on a
base whose stems are unconstrained (the paper's)."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.mixture_consistency = True
  return config


def get_config():
  return ablation_of_paper(__file__, override)
