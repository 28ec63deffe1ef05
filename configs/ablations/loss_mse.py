"""Ablation: MSE loss instead of the relative MSE."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.loss.kind = "mse"
  return config


def get_config():
  return ablation_of_paper(__file__, override)
