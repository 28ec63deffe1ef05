"""Trains, or separates with, one peer of bench.quality, in the peers' venv.

  <peer venv>/bin/python -m bench._quality_peer --job RUN/job.json --stage train|separate

Runs under the peers' virtual environment (torch, demucs, openunmix,
soundfile; no JAX), pinned to one core by quality.py.  The recipes, each
faithful to its own project, are in _quality_umx.py and _quality_demucs.py;
this file holds what the peers share, the same protocol as our train.py:

* ``train``: trains until the job's budget of training time is spent
  (validation excluded; data loading and preprocessing included), validates
  every N minutes of training time and at the end on the corpus's validation
  tracks with the utterance SDR of our training loop, keeps the state of the
  best validation SDR (``train/best.pt``) and writes ``train_result.json``.
* ``separate``: separates the job's test tracks with that state into
  ``estimates/`` (see _quality_files.py).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import sys
import time

from attnsep_jax.files import staged_file
from bench import _quality_files as files

RECIPES = {"umx": "bench._quality_umx", "demucs": "bench._quality_demucs"}
BEST_FILE = os.path.join("train", "best.pt")
LOG_EVERY_STEPS = 20


class TrainingClock:
  """Seconds spent inside ``with clock.running():`` blocks."""

  def __init__(self):
    self.seconds = 0.0

  @contextlib.contextmanager
  def running(self):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.seconds += time.perf_counter() - start


def recipe_module(system: str):
  return importlib.import_module(RECIPES[system])


def set_up_torch(seed: int):
  import random

  import torch
  # One core per contender: torch's own pools would otherwise spin on both.
  torch.set_num_threads(1)
  torch.set_num_interop_threads(1)
  torch.manual_seed(seed)
  random.seed(seed)


def whole_tracks(tracks: list[dict], sources) -> list[tuple]:
  """(name, mixture (T, 2), sources (S, T, 2)) of each {"name", "dir", "start", "frames"}."""
  out = []
  for track in tracks:
    audio = files.read_stems(track["dir"], ("mixture",) + tuple(sources), track["start"],
                             track["frames"])
    out.append((track["name"], audio[0], audio[1:]))
  return out


def validate(recipe, tracks, sources) -> dict:
  """Mean utterance SDR over tracks, per source and averaged (as our loop's)."""
  import numpy as np
  sdr = np.mean([files.utterance_sdr(refs, recipe.separate(mixture))
                 for _, mixture, refs in tracks], axis=0)
  return {"sdr": float(sdr.mean()), **{f"sdr_{s}": float(v) for s, v in zip(sources, sdr)}}


def train(job: dict) -> None:
  import torch
  set_up_torch(job["seed"])
  module = recipe_module(job["system"])
  sources, run_dir = job["sources"], job["run_dir"]
  budget, every = job["budget_seconds"], job["valid_every_seconds"]
  valid = whole_tracks(job["valid_tracks"], sources)
  clock = TrainingClock()
  with clock.running():   # Open-Unmix's dataset statistics are part of its training
    recipe = module.Recipe(job["options"], sources, job["sample_rate"],
                           train_tracks=job["train_tracks"], seed=job["seed"])
  os.makedirs(os.path.join(run_dir, "train"), exist_ok=True)
  curve, best, step, next_valid = [], None, 0, every
  print(f"training {job['system']}: {recipe.params():,} parameters, budget "
        f"{budget / 60:g} min", flush=True)
  while clock.seconds < budget:
    with clock.running():
      loss = recipe.train_step(step)
    step += 1
    if not math.isfinite(loss):
      sys.exit(f"error: non-finite loss at step {step}")
    if step % LOG_EVERY_STEPS == 0:
      print(f"step {step}  loss {loss:.4f}  {clock.seconds / 60:.1f} min", flush=True)
    if clock.seconds >= next_valid or clock.seconds >= budget:
      started = time.perf_counter()
      point = {"minutes": clock.seconds / 60, "step": step,
               **validate(recipe, valid, sources), **recipe.after_validation(valid)}
      point["valid_seconds"] = time.perf_counter() - started
      curve.append(point)
      if best is None or point["sdr"] > best["sdr"]:
        best = point
        with staged_file(os.path.join(run_dir, BEST_FILE), "the best state") as tmp:
          torch.save(recipe.state_dict(), tmp)
      print(f"step {step}: validation SDR {point['sdr']:.2f} dB at "
            f"{point['minutes']:.1f} min", flush=True)
      while next_valid <= clock.seconds:
        next_valid += every
  files.write_json(os.path.join(run_dir, files.TRAIN_RESULT_FILE), {
      "steps": step, "train_seconds": clock.seconds, "params": recipe.params(),
      "batch_size": recipe.options["batch_size"],
      "segment_seconds": recipe.options["segment_seconds"],
      "seconds_per_step": clock.seconds / max(step, 1), "stopped": "budget",
      "curve": curve, "selected": best, "options": recipe.options,
      "versions": recipe.versions()})


def separate(job: dict) -> None:
  import torch
  set_up_torch(job["seed"])
  module = recipe_module(job["system"])
  sources, run_dir = job["sources"], job["run_dir"]
  recipe = module.Recipe(job["options"], sources, job["sample_rate"])
  recipe.load_state_dict(torch.load(os.path.join(run_dir, BEST_FILE)))
  seconds = {}
  for name, mixture, _ in whole_tracks(job["test_tracks"], ()):
    started = time.perf_counter()
    estimates = recipe.separate(mixture)
    seconds[name] = time.perf_counter() - started
    files.write_estimates(run_dir, name, sources, estimates, job["sample_rate"])
  files.write_json(os.path.join(run_dir, files.SEPARATED_FILE),
                   {"test": job["test"], "seconds": seconds})


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--job", required=True, help="job.json written by bench.quality")
  parser.add_argument("--stage", choices=("train", "separate"), required=True)
  args = parser.parse_args(argv)
  job = files.read_json(args.job)
  (train if args.stage == "train" else separate)(job)


if __name__ == "__main__":
  main()
