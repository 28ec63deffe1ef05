"""Ablation: a plain U-Net encoder: no dense connections within or across scales."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.dense_connections = "none"
  return config


def get_config():
  return ablation_of_paper(__file__, override)
