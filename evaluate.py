"""Scores a separator on MUSDB18/-HQ (or the built-in corpus) with BSS Eval v4.

    python evaluate.py --checkpoint runs/cpu_small --musdb data/synth --is-wav

Separates every track of the subset with the shared chunked inference, scores
it with BSS Eval v4 (museval's numbers: ``attnsep_jax.bsseval`` in this
process by default, or museval itself in worker processes), and writes
museval's per-track JSON (``OUT/<method>/<subset>/<track>.json``), the
aggregate (``OUT/results.json``) and a Markdown table (``OUT/results.md``)
with the mixture and oracle-IRM reference rows and the published MUSDB18
rows.  Tracks already scored in OUT are skipped unless ``--force``, so an
interrupted evaluation resumes.
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys

import numpy as np

from attnsep_jax import SOURCES


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", required=True,
                      help="training workdir (train.py) or export (attnsep-export)")
  parser.add_argument("--musdb", required=True, help="MUSDB18(-HQ) root or built-in corpus")
  parser.add_argument("--is-wav", action="store_true",
                      help="wav folders (MUSDB18-HQ layout) instead of .stem.mp4")
  parser.add_argument("--subset", choices=("train", "test"), default="test")
  parser.add_argument("--tracks", nargs="*", default=None, help="only these track names")
  parser.add_argument("--out", default=None,
                      help="output folder (default: CHECKPOINT/museval-SUBSET)")
  parser.add_argument("--backend", choices=("jax", "museval"), default="jax",
                      help="BSS Eval v4 implementation: attnsep_jax.bsseval (museval's "
                      "numbers, in this process) or museval itself (slow)")
  parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                      help="museval worker processes (--backend museval)")
  parser.add_argument("--check-museval", type=float, default=0.0, metavar="SECONDS",
                      help="score the first SECONDS of the first scored track with both "
                      "backends and warn if they disagree by more than 0.01 dB")
  parser.add_argument("--seconds", type=float, default=None,
                      help="score only the first N seconds of each track (quick runs)")
  parser.add_argument("--shifts", type=int, default=None,
                      help="random-shift passes (default: the config's inference.shifts)")
  parser.add_argument("--no-references", action="store_true",
                      help="skip the mixture and oracle-IRM reference rows")
  parser.add_argument("--force", action="store_true", help="re-score scored tracks")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  return parser.parse_args(argv)


class InProcessExecutor(concurrent.futures.Executor):
  """Runs each task at submission: BSS Eval in JAX already uses every core."""

  def submit(self, fn, /, *args, **kwargs):
    future = concurrent.futures.Future()
    try:
      future.set_result(fn(*args, **kwargs))
    except BaseException as e:  # re-raised by future.result(), as a pool would
      future.set_exception(e)
    return future


def make_executor(backend: str, workers: int) -> concurrent.futures.Executor:
  """Where tracks are scored: this process (jax) or museval worker processes."""
  if backend == "jax":
    return InProcessExecutor()
  # Spawned workers: forking a process that has started JAX's threads is unsafe.
  return concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context("spawn"))


def check_museval(sources: np.ndarray, estimates: np.ndarray, rate: int, seconds: float,
                  label: str) -> bool:
  """Both BSS Eval backends on the first ``seconds``; prints the differences
  and a warning per disagreement.  True when they agree."""
  from attnsep_jax.bsseval.check import cross_check
  from attnsep_jax.evaluation import MUSDB_TARGETS
  frames = int(seconds * rate)
  order = [SOURCES.index(t) for t in MUSDB_TARGETS]
  differences, problems = cross_check(sources[order, :frames], estimates[order, :frames], rate)
  print(f"museval cross-check, first {seconds:g} s of {label}: max |difference| "
        + ", ".join(f"{m} {d:.1e}" for m, d in differences.items()) + " dB", flush=True)
  for problem in problems:
    print(f"evaluate.py: warning: BSS Eval backends disagree: {problem}", file=sys.stderr)
  return not problems


def main(argv=None):
  args = parse_args(argv)
  from tqdm import tqdm

  from attnsep_jax.data.musdb import DataError, TrackIndex
  from attnsep_jax.evaluation import (REFERENCE_METHODS, aggregate, markdown_table,
                                      oracle_irm, score_and_write, write_json)
  from attnsep_jax.export import ModelLoadError, load_model
  from attnsep_jax.inference import separate

  def fail(message):
    print(f"evaluate.py: error: {message}", file=sys.stderr)
    return 1

  try:
    config, model, params = load_model(args.checkpoint)
    index = TrackIndex(args.musdb, is_wav=args.is_wav)
  except (ModelLoadError, DataError) as e:
    return fail(e)
  tracks = index.tracks(args.subset)
  if args.tracks:
    missing = sorted(set(args.tracks) - {t.name for t in tracks})
    if missing:
      return fail(f"no track(s) {', '.join(missing)} in the {args.subset} subset")
    tracks = [t for t in tracks if t.name in args.tracks]
  if not tracks:
    return fail(f"no tracks in the {args.subset} subset of {args.musdb}")
  out = args.out or os.path.join(args.checkpoint, f"museval-{args.subset}")
  methods = ("model",) if args.no_references else ("model",) + REFERENCE_METHODS
  rate = int(config.data.sample_rate)
  inference = dict(config.inference)
  if args.shifts is not None:
    inference["shifts"] = args.shifts

  def result_path(method, track):
    return os.path.join(out, method, args.subset, f"{track.name}.json")

  todo = [(m, t) for t in tracks for m in methods
          if args.force or not os.path.exists(result_path(m, t))]
  print(f"{len(tracks)} tracks x {len(methods)} methods; {len(todo)} to score "
        f"({len(tracks) * len(methods) - len(todo)} already in {out})", flush=True)
  bar = tqdm(total=len(todo), unit="score", disable=args.quiet, file=sys.stderr)
  to_check = args.check_museval
  with make_executor(args.backend, args.workers) as pool:
    futures = []
    for track in tracks:
      wanted = [m for m, t in todo if t is track]
      if not wanted:
        continue
      frames = None if args.seconds is None else int(args.seconds * track.sample_rate)
      audio = index.read(track, 0, frames, stems=("mixture",) + SOURCES)
      if track.sample_rate != rate:
        return fail(f"{track.name}: sample rate {track.sample_rate} Hz, model expects {rate}")
      mixture, sources = audio[0], audio[1:]
      for method in wanted:
        if method == "model":
          estimates = separate(model, params, mixture, sample_rate=rate, **inference)
        elif method == "mixture":
          estimates = np.broadcast_to(mixture, sources.shape).copy()
        else:
          estimates = oracle_irm(mixture, sources)
        if to_check:
          check_museval(sources, estimates, rate, to_check, f"{track.name} ({method})")
          to_check = 0.0
        futures.append(pool.submit(score_and_write, result_path(method, track),
                                   track.name, sources, estimates, rate, args.backend))
        futures[-1].add_done_callback(lambda _: bar.update())
    for future in futures:
      future.result()
  bar.close()

  results = {}
  for method in methods:
    scored = [json.load(open(result_path(method, t))) for t in tracks]
    results[method] = aggregate(scored)
  is_builtin = os.path.exists(os.path.join(args.musdb, "corpus.json"))
  is_musdb = not is_builtin and args.subset == "test" and len(tracks) == 50 and not args.seconds
  label = (f"{args.subset} subset of {args.musdb}, {len(tracks)} tracks"
           + (f", first {args.seconds:g} s of each" if args.seconds else "")
           + (" (built-in corpus)" if is_builtin else ""))
  table = markdown_table(results, label, is_musdb)
  mean_table = markdown_table(results, label, is_musdb, statistic="mean")
  write_json(os.path.join(out, "results.json"),
             {"checkpoint": os.path.abspath(args.checkpoint), "data": label,
              "backend": args.backend, "results": results})
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(table + "\n\n" + mean_table + "\n")
  print(table)
  print(f"\nper-track museval JSON and results.md in {out}")
  return 0

if __name__ == "__main__":
  sys.exit(main())
