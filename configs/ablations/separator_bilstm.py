"""Ablation: Demucs v2's 2-layer BiLSTM at the bottleneck instead of the dual-path transformer."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.separator = "bilstm"
  return config


def get_config():
  return ablation_of_paper(__file__, override)
