"""Ablation: dense blocks within each scale (the paper config's reading), on
a base with another reading (cpu_small: across scales)."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.dense_connections = "within_scale"
  return config


def get_config():
  return ablation_of_paper(__file__, override)
