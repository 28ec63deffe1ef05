"""Variant beyond the paper: the spectral branch with Hybrid Demucs's
frequency embedding, a learnt vector per bin added after the first spectral
encoder block (docs/architecture.md, "Spectral branch")."""

from attnsep_jax.config import ablation_of_paper, load_ablation, sibling


def override(config):
  config = load_ablation(sibling(__file__, "spectral_branch.py"))(config)
  config.model.spectral_freq_embedding = 0.2
  return config


def get_config():
  return ablation_of_paper(__file__, override)
