"""Pools the seeds of several bench.quality runs and compares them per test song.

  .venv/bin/python -m bench.quality_pool \\
      hybrid=docs/results/quality_1h_hybrid_seed0.json:spectral,docs/results/quality_1h_side_seed2.json:hybrid \\
      umx=docs/results/quality_1h_intel.json:umx,docs/results/quality_1h_side_seed2.json:umx

Each argument is NAME=FILE:CONTENDER[,FILE:CONTENDER...]: the seeds of
contender CONTENDER in the quality.json FILE, gathered under NAME.  Prints
each pooled contender's seeds (test SDR, average of the four sources) with
their mean and standard deviation, then bench.quality's paired table: each
later contender against the first, per test song, seeds averaged.  Runs of
several hours pool only when they share a protocol: the same test songs and
statistic, training corpus, budget and machine type; anything else is refused.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from bench import common
from bench.quality import ORDER, BenchError, paired, paired_rows


def parse_pool(text: str) -> tuple[str, list[tuple[str, str]]]:
  """'NAME=FILE:CONTENDER,...' -> (NAME, [(FILE, CONTENDER), ...])."""
  name, sep, sources = text.partition("=")
  parts = [s.rpartition(":") for s in sources.split(",")]
  if not sep or not name or any(not f or not c for f, _, c in parts):
    raise BenchError(f"expected NAME=FILE:CONTENDER[,FILE:CONTENDER...], got {text!r}")
  return name, [(f, c) for f, _, c in parts]


def load_seeds(path: str, contender: str) -> tuple[list[dict], dict]:
  """The seeds of ``contender`` in the quality.json at ``path``, and what was scored."""
  try:
    with open(path) as f:
      results = json.load(f)
    seeds = results["contenders"][contender]["seeds"]
    scored = {"test corpus": results["corpora"]["test"]["path"],
              "test songs": results["protocol"]["test_tracks"],
              "statistic": results["protocol"]["statistic"],
              "training corpus": results["corpora"]["train"]["path"],
              "budget": results["protocol"]["budget_minutes"],
              "machine": results["machine"]["cpu"]}
  except (OSError, ValueError) as e:
    raise BenchError(f"cannot read {path}: {e}") from None
  except KeyError as e:
    raise BenchError(f"{path} has no {e} (contenders there: "
                     f"{', '.join(results.get('contenders', {})) or 'none'})") from None
  return seeds, scored


def pool(specs: list[str]) -> tuple[dict, dict]:
  """{NAME: {"seeds": [...]}} from the specs, and the protocol they share."""
  summaries, scored = {}, None
  for spec in specs:
    name, sources = parse_pool(spec)
    if name in summaries:
      raise BenchError(f"pooled contender {name} is named twice")
    summaries[name] = {"seeds": []}
    for path, contender in sources:
      seeds, this = load_seeds(path, contender)
      differing = [k for k in this if scored is not None and this[k] != scored[k]]
      if differing:
        raise BenchError(f"{path} differs from the files before it in its "
                         f"{', '.join(differing)}; only runs of one protocol pool")
      scored = this
      summaries[name]["seeds"] += seeds
  return summaries, scored


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("pools", nargs="+", help="NAME=FILE:CONTENDER[,FILE:CONTENDER...]")
  args = parser.parse_args(argv)
  try:
    summaries, scored = pool(args.pools)
  except BenchError as e:
    print(f"quality_pool.py: error: {e}", file=sys.stderr)
    return 2
  rows = []
  for name, summary in summaries.items():
    averages = [s["sdr_avg"] for s in summary["seeds"]]
    rows.append({"contender": name, "seeds": len(averages),
                 "test SDR per seed": ", ".join(f"{a:.2f}" for a in averages),
                 "mean": f"{np.mean(averages):.2f}",
                 "std": f"{np.std(averages, ddof=1):.2f}" if len(averages) > 1 else ""})
  common.print_table(rows, ["contender", "seeds", "test SDR per seed", "mean", "std"],
                     title=f"Pooled seeds, {len(scored['test songs'])} test songs of "
                           f"{scored['test corpus']} ({scored['statistic']}; average of "
                           f"the sources), {scored['budget']:g} min on {scored['training corpus']}:")
  differences = paired(summaries)
  if differences:
    first = next(iter(summaries))
    common.print_table(paired_rows(differences, first),
                       ["contender", *ORDER, "avg [95% CI]", "songs better"],
                       title=f"Per test song, against {first} (dB; mean paired difference, "
                             "seeds averaged; 95% bootstrap interval over songs):")
  return 0


if __name__ == "__main__":
  sys.exit(main())
