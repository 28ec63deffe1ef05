"""Ablation: a plain U-Net encoder: each block sees only the previous block."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.dense_connections = False
  return config


def get_config():
  return ablation_of_paper(__file__, override)
