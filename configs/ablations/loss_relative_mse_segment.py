"""Ablation: the paper's relative MSE with |.| read as the norm of each
stem's segment (docs/architecture.md, "Loss")."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.loss.kind = "relative_mse"
  config.loss.reduction = "segment"
  config.loss.eps_scale = "absolute"
  config.loss.eps = 1e-3
  return config


def get_config():
  return ablation_of_paper(__file__, override)
