"""A small model that trains at a useful speed on a 2-core CPU.

Same architecture as the paper (dense U-Net, channel attention, dual-path
transformer with BiLSTM FFN, relative MSE); fewer, narrower blocks, short
segments, and the built-in corpus (python -m attnsep_jax.data.synth).
"""

from attnsep_jax.config import load_config, sibling


def get_config():
  config = load_config(sibling(__file__, "default.py"))
  config.model.channels = (16, 32, 64, 128, 256)
  config.model.separator_dim = 64
  config.model.num_dual_path_blocks = 2
  config.model.num_heads = 4
  config.model.ffn_hidden = 64
  config.data.root = "data/synth"
  config.data.segment_seconds = 2.0
  config.data.batch_size = 4
  config.data.shift_seconds = 0.5
  # A dozen training songs: half the examples stay coherent (test mixtures are).
  config.data.remix_probability = 0.5
  # The step needs the cores; one loader thread still has >10x headroom.
  config.data.num_workers = 1
  config.data.prefetch_batches = 2
  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 100
  config.train.num_steps = 2000
  config.train.log_every_steps = 10
  config.train.eval_every_steps = 200
  config.train.checkpoint_every_steps = 200
  config.train.ema_decay = 0.99
  config.inference.segment_seconds = 4.0
  config.inference.batch_size = 2
  return config
