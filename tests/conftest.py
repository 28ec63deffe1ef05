"""Shared test setup: the JAX compilation cache and small shared models.

Compilation dominates test time on CPU, so every test uses tiny configs and
the persistent compilation cache (a re-run compiles from disk in ~1 s).
"""

import os

# Two fake CPU devices so that pmap/multi-device code is tested on any machine;
# must be set before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
# The commands tests run in-process would otherwise switch the test process's
# heap mid-run (attnsep_jax.heap); tests/test_heap.py tests it in a child.
os.environ.setdefault("ATTNSEP_KEEP_HEAP", "0")

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
def tiny_export(tiny_config, tiny_model_and_params, tmp_path_factory):
  """An inference export of the tiny model (separation, web and CLI tests)."""
  from attnsep_jax.export import write_export
  _, params = tiny_model_and_params
  out = str(tmp_path_factory.mktemp("export") / "tiny")
  write_export(tiny_config, params, out)
  return out


@pytest.fixture(scope="session")
def tiny_model_and_params(tiny_config):
  """One initialisation of the tiny model, shared by the whole session."""
  from attnsep_jax.models.network import build_model, init_params
  model = build_model(tiny_config.model)
  params = jax.jit(lambda rng: init_params(model, rng))(jax.random.key(0))
  return model, params


# ---------------------------------------------------------------------------
# train fixtures (attnsep_jax.train tests)
# ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def train_config(tiny_config):
  """tiny.py with a schedule that does not depend on num_steps, so that every
  train test shares one compiled step (equal configs -> equal static state)."""
  from attnsep_jax.config import apply_overrides
  return apply_overrides(tiny_config, [
      "optim.learning_rate=3e-3", "optim.warmup_steps=0", "optim.decay=constant",
      "optim.decay_steps=1000", "data.batch_size=2", "train.ema_decay=0.9"])


@pytest.fixture(scope="session")
def train_state(train_config):
  """One fresh TrainState of train_config, shared by the train tests."""
  from attnsep_jax.train.state import create_train_state
  return create_train_state(train_config)


# ---------------------------------------------------------------------------
# data fixtures (attnsep_jax.data tests)
# ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory):
  """A tiny built-in corpus, generated once per session (read-only for tests):
  3 train tracks (the last one listed for validation) + 2 test tracks of 3.5 s."""
  from attnsep_jax.corpus import generate_corpus
  root = tmp_path_factory.mktemp("data") / "synth"
  generate_corpus(str(root), tracks=3, test_tracks=2, valid_tracks=1, seconds=3.5, seed=7,
                  workers=1)
  return str(root)


@pytest.fixture
def corpus_copy(synth_corpus, tmp_path):
  """A writable copy of synth_corpus, for tests that break it on purpose."""
  import shutil
  root = tmp_path / "corpus"
  shutil.copytree(synth_corpus, root)
  return str(root)
