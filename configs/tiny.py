"""A toy-sized model for tests and smoke runs: compiles in seconds, learns little."""

from attnsep_jax.config import load_config, sibling


def get_config():
  config = load_config(sibling(__file__, "cpu_small.py"))
  config.model.channels = (4, 8)
  # The paper's dense blocks (cpu_small's cross-scale reading is cheaper on a
  # CPU), so that tests exercise the paper's block structure.
  config.model.dense_connections = "within_scale"
  config.model.separator_dim = 8
  config.model.num_dual_path_blocks = 1
  config.model.chunk_frames = 4
  config.model.hop_frames = 2
  config.model.num_heads = 2
  config.model.ffn_hidden = 8
  config.model.attention_reduction = 2
  config.data.segment_seconds = 0.25
  config.data.batch_size = 2
  config.train.num_steps = 4
  config.train.log_every_steps = 1
  config.train.eval_every_steps = 2
  config.train.checkpoint_every_steps = 2
  config.inference.segment_seconds = 0.5
  return config
