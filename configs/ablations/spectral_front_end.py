"""Variant beyond the paper: the spectral branch's encoder only (half the
waveform U-Net's widths), feeding the bottleneck; the stems stay the
waveform decoder's (docs/architecture.md, "Spectral branch")."""

from attnsep_jax.config import ablation_of_paper


def override(config):
  config.model.spectral_channels = tuple(max(4, c // 2) for c in config.model.channels)
  config.model.spectral_output = False
  return config


def get_config():
  return ablation_of_paper(__file__, override)
