"""Ablation: no separator at the bottleneck (the U-Net alone)."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.separator = "none"
  return config


def get_config():
  return ablation_of_paper(__file__, override)
