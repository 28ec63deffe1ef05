"""Scores a separator on MUSDB18/-HQ (or the built-in corpus) with museval.

    python evaluate.py --checkpoint runs/cpu_small --musdb data/synth --is-wav

Separates every track of the subset with the shared chunked inference, scores
it with BSS Eval v4 in worker processes, and writes museval's per-track JSON
(``OUT/<method>/<subset>/<track>.json``), the aggregate (``OUT/results.json``)
and a Markdown table (``OUT/results.md``) with the mixture and oracle-IRM
reference rows and the published MUSDB18 rows.  Tracks already scored in OUT
are skipped unless ``--force``, so an interrupted evaluation resumes.
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
  parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                      help="museval worker processes")
  parser.add_argument("--seconds", type=float, default=None,
                      help="score only the first N seconds of each track (quick runs)")
  parser.add_argument("--shifts", type=int, default=None,
                      help="random-shift passes (default: the config's inference.shifts)")
  parser.add_argument("--no-references", action="store_true",
                      help="skip the mixture and oracle-IRM reference rows")
  parser.add_argument("--force", action="store_true", help="re-score scored tracks")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  return parser.parse_args(argv)


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
  # Spawned workers: forking a process that has started JAX's threads is unsafe.
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=context) as pool:
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
        futures.append(pool.submit(score_and_write, result_path(method, track),
                                   track.name, sources, estimates, rate))
    for future in concurrent.futures.as_completed(futures):
      future.result()
      bar.update()
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
              "results": results})
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(table + "\n\n" + mean_table + "\n")
  print(table)
  print(f"\nper-track museval JSON and results.md in {out}")
  return 0

if __name__ == "__main__":
  sys.exit(main())
