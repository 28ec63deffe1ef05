"""Flax modules of the separation network; ``network.AttnSepNet`` wires them."""

from attnsep_jax.models.network import AttnSepNet, build_model, count_params

__all__ = ["AttnSepNet", "build_model", "count_params"]
