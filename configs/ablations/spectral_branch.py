"""Variant beyond the paper: a spectral branch (Hybrid Demucs) beside the
waveform U-Net, half its widths, meeting it at the bottleneck and adding
its own stems (docs/architecture.md, "Spectral branch")."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.spectral_channels = tuple(max(4, c // 2) for c in config.model.channels)
  config.model.spectral_output = True
  return config


def get_config():
  return ablation_of_paper(__file__, override)
