"""Shared test setup: the JAX compilation cache and small shared models.

Compilation dominates test time on CPU, so every test uses tiny configs and
the persistent compilation cache (a re-run compiles from disk in ~1 s).
"""

import os

# Two fake CPU devices so that pmap/multi-device code is tested on any machine;
# must be set before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import jax  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE_DIR = os.environ.get("ATTNSEP_JAX_CACHE", os.path.join(REPO_ROOT, ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def repo_root():
  return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_config():
  from attnsep_jax.config import load_config
  return load_config(os.path.join(REPO_ROOT, "configs", "tiny.py"))


@pytest.fixture(scope="session")
def tiny_model_and_params(tiny_config):
  """One initialisation of the tiny model, shared by the whole session."""
  from attnsep_jax.models.network import build_model, init_params
  model = build_model(tiny_config.model)
  params = jax.jit(lambda rng: init_params(model, rng))(jax.random.key(0))
  return model, params
