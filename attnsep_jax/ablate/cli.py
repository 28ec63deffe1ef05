"""``attnsep ablate``: train, score and tabulate ablations against a base config.

    attnsep ablate --config configs/cpu_small.py --ablations configs/ablations/ \\
        --data data/synth --workdir runs/ablate --steps 2000

Every variant (the base included) is trained with the same data, seed, budget
(``--steps``, or ``--minutes`` of training time with ``--steps`` as the cap),
``--config.a.b=value`` overrides and evaluation protocol, in its own
sub-workdir (``WORKDIR/<variant>/seed_<k>``), so an interrupted study resumes
where it stopped and finished variants are not retrained.  ``--only NAME``
runs one variant (one job per variant on a cluster); ``--report-only``
tabulates whatever has finished.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

from attnsep_jax import cli
from attnsep_jax import config as config_lib
from attnsep_jax.ablate import report, study


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog=cli.prog("ablate"),
      description="Train, score and tabulate ablations against a base config.",
      epilog="Every --config.a.b=value override applies to every variant, after its "
      "ablation.")
  config_lib.add_config_arguments(
      parser, required=False, what="the base config every variant starts from "
      "(configs/cpu_small.py, configs/paper.py); not needed with --report-only")
  parser.add_argument("--ablations", default=None,
                      help="folder of ablation files with override(config), or one file")
  parser.add_argument("--data", default=None, help="corpus root (overrides config.data.root)")
  parser.add_argument("--workdir", required=True, help="study folder; one sub-workdir per variant")
  parser.add_argument("--steps", type=int, default=None, help="training steps per variant")
  parser.add_argument("--minutes", type=float, default=None,
                      help="training-time budget per variant (validation excluded); "
                      "--steps still sets the learning-rate schedule and a step cap")
  parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
  parser.add_argument("--only", action="append", default=[],
                      help="run only this variant (repeatable); 'base' is the base")
  parser.add_argument("--report-only", action="store_true",
                      help="only tabulate the finished variants")
  parser.add_argument("--test-data", default=None,
                      help="corpus whose test subset is scored (default: --data)")
  parser.add_argument("--test-seconds", type=float, default=None,
                      help="score only the first N seconds of each test track")
  parser.add_argument("--museval", action="store_true",
                      help="also score every variant with BSS Eval v4 (museval's numbers, "
                      "computed by attnsep_jax.bsseval); with --report-only, scores "
                      "finished variants that lack it")
  return parser


def _seeds(parser: argparse.ArgumentParser, text: str) -> list[int]:
  try:
    return [int(s) for s in text.split(",") if s.strip()]
  except ValueError:
    parser.error(f"--seeds must be integers separated by commas, got {text!r}")


def _run(args, base, seeds: list[int]) -> None:
  variants = study.discover_variants(args.ablations, args.only)
  os.makedirs(args.workdir, exist_ok=True)
  study.run_study(base, variants, args.workdir, data_root=args.data, steps=args.steps,
                  seeds=seeds, overrides=args.config_overrides, minutes=args.minutes,
                  test_seconds=args.test_seconds, test_data=args.test_data,
                  with_museval=args.museval)


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  try:
    args, base = config_lib.parse_args(parser, argv)
  except config_lib.ConfigError as e:
    return cli.fail("ablate", e)
  seeds = _seeds(parser, args.seeds)
  if not args.report_only and base is None:
    parser.error("--config is required unless --report-only")

  from attnsep_jax.data.musdb import DataError
  from attnsep_jax.files import WriteError
  from attnsep_jax.train.checkpoint import CheckpointError
  from attnsep_jax.train.loop import TrainingDivergedError
  try:
    if not args.report_only:
      _run(args, base, seeds)
    elif args.museval:
      study.add_museval_to_finished(args.workdir)
    if report.report(args.workdir) is None:
      return cli.fail("ablate", f"no finished variants under {args.workdir}")
  except (config_lib.ConfigError, CheckpointError, TrainingDivergedError, DataError,
          WriteError, study.StudyStopped) as e:
    return cli.fail("ablate", e)
  return 0
