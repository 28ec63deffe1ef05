"""Ablation: sinusoidal positional encoding added in every transformer layer (the paper reports it did not converge)."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.positional_encoding = "sinusoidal"
  return config


def get_config():
  return ablation_of_paper(__file__, override)
