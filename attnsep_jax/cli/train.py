"""``attnsep train --config configs/cpu_small.py --workdir DIR``: train a separator.

Resumes automatically from the newest good checkpoint in ``--workdir``.
Override any config field with ``--config.a.b=value``.  On a SLURM cluster, a
Cloud TPU pod or with ``JAX_COORDINATOR_ADDRESS`` set, each process joins one
multi-process JAX system; by hand, pass ``--coordinator_address``,
``--num_processes`` and ``--process_id`` (see docs/training.md).
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Sequence

from attnsep_jax import cli
from attnsep_jax import config as config_lib

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "attnsep-jax", "xla")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog=cli.prog("train"),
      description="Train a separator from a config file. Resumes from the newest good "
      "checkpoint in --workdir; overrides any config field with --config.a.b=value.")
  config_lib.add_config_arguments(parser)
  parser.add_argument("--workdir", required=True,
                      help="checkpoints, metrics and plots go here; an existing run resumes")
  parser.add_argument("--distributed", choices=("auto", "on", "off"), default="auto",
                      help="join a multi-process JAX system: auto (when a launcher or the "
                      "flags below say so), on (always; JAX detects the cluster), off")
  parser.add_argument("--coordinator_address", help="host:port of process 0 (launch by hand)")
  parser.add_argument("--num_processes", type=int, help="number of processes (launch by hand)")
  parser.add_argument("--process_id", type=int, help="this process's index (launch by hand)")
  parser.add_argument("--compilation_cache", default=os.environ.get("ATTNSEP_JAX_CACHE",
                                                                    DEFAULT_CACHE),
                      help="persistent XLA compilation cache ('' disables); makes restarts "
                      f"compile in seconds (default {DEFAULT_CACHE})")
  return parser


def use_compilation_cache(folder: str) -> None:
  import jax
  if folder:
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def print_outcome(summary: dict) -> None:
  valid = summary.get("valid") or {}
  if valid:
    print(f"final validation SDR {valid['sdr']:.2f} dB at step {summary['step']}; "
          f"best checkpoint: step {summary.get('best_step')}")
  if summary.get("plot"):
    print(f"curves: {summary['plot']}")


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  try:
    args, config = config_lib.parse_args(parser, argv)
  except config_lib.ConfigError as e:
    return cli.fail("train", e)

  # Orbax logs a warning for every checkpoint saved between validations.
  logging.getLogger("absl").setLevel(logging.ERROR)
  import jax

  from attnsep_jax.data.musdb import DataError
  from attnsep_jax.files import WriteError
  from attnsep_jax.train import distributed
  from attnsep_jax.train.checkpoint import CheckpointError
  from attnsep_jax.train.loop import TrainingDivergedError, train_and_evaluate
  use_compilation_cache(args.compilation_cache)
  try:
    distributed.initialize(args.distributed, args.coordinator_address,
                           args.num_processes, args.process_id)
    summary = train_and_evaluate(config, args.workdir)
  except (config_lib.ConfigError, CheckpointError, TrainingDivergedError, DataError,
          WriteError) as e:
    return cli.fail("train", e)
  if jax.process_index() == 0:
    print_outcome(summary)
  return 0
