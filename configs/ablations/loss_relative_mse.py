"""Ablation: the paper's relative MSE, read literally (per sample, eps in
waveform units), on a base that trains with another loss (cpu_small: L1)."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.loss.kind = "relative_mse"
  config.loss.reduction = "sample"
  config.loss.eps_scale = "absolute"
  config.loss.eps = 1e-3
  return config


def get_config():
  return ablation_of_paper(__file__, override)
