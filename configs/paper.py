"""The paper's model as published (Wang et al. 2023): the default config."""

from attnsep_jax.config import load_config, sibling


def get_config():
  return load_config(sibling(__file__, "default.py"))
