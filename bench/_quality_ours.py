"""Separates the test tracks of a bench.quality job with our trained model.

  .venv/bin/python -m bench._quality_ours --job RUN/job.json

Loads the run's train.py workdir as every other tool of the project does
(``attnsep_jax.export.load_model``: the checkpoint of the best validation
SDR, EMA parameters preferred) and separates with the project's one
inference path (``attnsep_jax.inference.separate``, the config's inference
settings), writing ``estimates/`` as the peers do (_quality_files.py).
"""

from __future__ import annotations

import argparse
import os
import time

from bench import _quality_files as files


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--job", required=True, help="job.json written by bench.quality")
  args = parser.parse_args(argv)
  job = files.read_json(args.job)

  from attnsep_jax.export import load_model
  from attnsep_jax.inference import separate
  config, model, params = load_model(job["train_dir"])
  rate = int(config.data.sample_rate)
  seconds = {}
  for track in job["test_tracks"]:
    mixture = files.read_stems(track["dir"], ("mixture",), track["start"], track["frames"])[0]
    started = time.perf_counter()
    estimates = separate(model, params, mixture, sample_rate=rate, **config.inference)
    seconds[track["name"]] = time.perf_counter() - started
    files.write_estimates(job["run_dir"], track["name"], job["sources"], estimates, rate)
  files.write_json(os.path.join(job["run_dir"], files.SEPARATED_FILE),
                   {"test": job["test"], "seconds": seconds})


if __name__ == "__main__":
  main()
