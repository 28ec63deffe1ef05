"""Ablation: the paper's unconstrained stems, on a base that projects them to
sum to the mixture (the small recipe)."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.mixture_consistency = False
  return config


def get_config():
  return ablation_of_paper(__file__, override)
