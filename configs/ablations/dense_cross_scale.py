"""Ablation: dense connections across scales (every earlier scale, pooled,
feeds each encoder block) instead of dense blocks within each scale."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.dense_connections = "cross_scale"
  return config


def get_config():
  return ablation_of_paper(__file__, override)
