"""Ablation: L1 loss (Demucs) instead of the relative MSE."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.loss.kind = "l1"
  return config


def get_config():
  return ablation_of_paper(__file__, override)
