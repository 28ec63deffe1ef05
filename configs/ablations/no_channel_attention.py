"""Ablation: no squeeze-excitation channel attention in any block."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.channel_attention = False
  return config


def get_config():
  return ablation_of_paper(__file__, override)
