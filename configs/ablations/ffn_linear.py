"""Ablation: a vanilla transformer feed-forward (Linear-ReLU-Linear) instead of the BiLSTM one.

Without the BiLSTM the transformer layers have no sense of order; see
positional_sinusoidal for the variant that restores it the usual way."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.ffn = "linear"
  config.model.ffn_hidden = 4 * config.model.separator_dim  # the usual FFN width
  return config


def get_config():
  return ablation_of_paper(__file__, override)
