"""Ablation: half as many dual-path blocks (at least one)."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.num_dual_path_blocks = max(1, config.model.num_dual_path_blocks // 2)
  return config


def get_config():
  return ablation_of_paper(__file__, override)
