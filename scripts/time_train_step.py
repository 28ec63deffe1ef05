"""Compile time and step time of the training step for a config, on this machine.

    .venv/bin/python scripts/time_train_step.py --config configs/cpu_small.py [--steps 5]
    .venv/bin/python scripts/time_train_step.py --config configs/paper.py \\
        --config.data.batch_size=2 --config.data.segment_seconds=4

Uses synthetic batches of ``data.batch_size`` x ``data.segment_seconds`` on all
local devices, the same pmapped step as train.py, and no compilation cache
(so the compile time is the real one).  Prints one JSON object.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from attnsep_jax import config as config_lib  # noqa: E402


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  config_lib.add_config_arguments(parser)
  parser.add_argument("--steps", type=int, default=5, help="timed steps after the first")
  args, config = config_lib.parse_args(parser, argv)

  import jax
  import numpy as np
  from attnsep_jax.models.network import count_params
  from attnsep_jax.train import distributed
  from attnsep_jax.train.state import create_train_state
  from attnsep_jax.train.synthetic import make_example_batch

  t0 = time.perf_counter()
  state = create_train_state(config)
  jax.block_until_ready(state)
  init_s = time.perf_counter() - t0
  segment = int(round(config.data.segment_seconds * config.data.sample_rate))
  batch = make_example_batch(config.data.batch_size, segment, seed=0)
  step = distributed.pmap_train_step()
  replicated = distributed.replicate(state)
  rng = np.asarray(jax.random.key_data(jax.random.key(0)))
  sharded = distributed.shard_batch(batch)

  t0 = time.perf_counter()
  lowered = step.lower(replicated, sharded, rng)
  trace_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  lowered.compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  replicated, metrics = step(replicated, sharded, rng)
  jax.block_until_ready(metrics)
  first_step_s = time.perf_counter() - t0
  times = []
  for _ in range(args.steps):
    t0 = time.perf_counter()
    replicated, metrics = step(replicated, sharded, rng)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  result = {
      "config": args.config, "overrides": args.config_overrides,
      "params": count_params(state.params), "devices": jax.local_device_count(),
      "batch": config.data.batch_size, "segment_seconds": config.data.segment_seconds,
      "dtype": config.model.dtype, "remat_separator": config.model.remat_separator,
      "init_seconds": round(init_s, 2), "trace_lower_seconds": round(trace_s, 2),
      "compile_seconds": round(compile_s, 2),
      "first_call_seconds": round(first_step_s, 2),
      "step_seconds_median": round(float(np.median(times)), 3),
      "step_seconds_min": round(float(np.min(times)), 3),
      "audio_seconds_per_second": round(
          config.data.batch_size * config.data.segment_seconds / float(np.median(times)), 2),
      "loss": float(np.asarray(metrics["loss"])[0]),
  }
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
