"""One BSS Eval v4 measurement in a fresh process (bench.bsseval runs it).

Loads stems from an .npz, scores them with ours (``attnsep_jax.bsseval``,
after a warm-up call on a short excerpt that compiles every jitted function)
or with museval, and writes the time, peak RSS (and peak device memory) as
JSON (wall and CPU seconds: on a shared machine the CPU time is the steadier
figure) and the per-window scores as .npy (4, sources, windows).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench import common

WINDOW_SAMPLES = 44100


def run_ours(references, estimates, warmup_seconds):
  import jax

  from attnsep_jax.bsseval import bss_eval_v4
  # Noise of the stems' dtype, sources and channels compiles the same functions
  # (an excerpt of the track could hold a silent stem).
  noise = np.random.default_rng(0).standard_normal(
      (references.shape[0], int(warmup_seconds * WINDOW_SAMPLES), references.shape[2]))
  noise = noise.astype(references.dtype)
  _, compile_s = common.timed(bss_eval_v4, noise, noise[::-1])
  cpu = time.process_time()
  scores, seconds = common.timed(bss_eval_v4, references, estimates)
  cpu_s = time.process_time() - cpu
  device = jax.devices()[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  extra = {"compile_s": compile_s, "cpu_s": cpu_s, "device": device.platform,
           "jax": jax.__version__}
  if stats and "peak_bytes_in_use" in stats:
    extra["device_peak_mb"] = stats["peak_bytes_in_use"] / 2 ** 20
  return scores, seconds, extra


def run_museval(references, estimates):
  from importlib.metadata import version

  import museval
  cpu = time.process_time()
  scores, seconds = common.timed(museval.evaluate, references, estimates, win=WINDOW_SAMPLES,
                                 hop=WINDOW_SAMPLES, mode="v4", padding=True)
  return scores, seconds, {"cpu_s": time.process_time() - cpu, "device": "cpu",
                           "museval": version("museval")}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--backend", choices=("ours", "museval"), required=True)
  parser.add_argument("--input", required=True, help=".npz with references and estimates")
  parser.add_argument("--out", required=True, help="JSON result")
  parser.add_argument("--scores", required=True, help=".npy of the per-window scores")
  parser.add_argument("--warmup-seconds", type=float, default=2.0)
  args = parser.parse_args()
  with np.load(args.input) as data:
    references, estimates = data["references"], data["estimates"]
  rss_input_mb = common.peak_rss_mb()
  if args.backend == "ours":
    scores, seconds, extra = run_ours(references, estimates, args.warmup_seconds)
  else:
    scores, seconds, extra = run_museval(references, estimates)
  np.save(args.scores, np.stack([np.asarray(s, np.float64) for s in scores]))
  common.write_json(args.out, {"backend": args.backend, "time_s": seconds,
                               "rss_input_mb": rss_input_mb,
                               "peak_rss_mb": common.peak_rss_mb(), **extra})


if __name__ == "__main__":
  main()
