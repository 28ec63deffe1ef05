"""Variant beyond the paper: the spectral branch's encoder only (half the
waveform U-Net's widths), feeding the bottleneck; the stems stay the
waveform decoder's (docs/architecture.md, "Spectral branch")."""

from attnsep_jax.config import ablation_of_paper, load_ablation, sibling


def override(config):
  config = load_ablation(sibling(__file__, "spectral_branch.py"))(config)
  config.model.spectral_output = False
  return config


def get_config():
  return ablation_of_paper(__file__, override)
