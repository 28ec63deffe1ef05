"""Data-layer throughput: corpus rendering, chunk loading, soundfile vs musdb reads.

    .venv/bin/python -m bench.loader                      # generates a corpus in a temp folder
    .venv/bin/python -m bench.loader --corpus data/synth  # measures an existing corpus

Prints three tables and writes them as JSON (--json):
  * corpus: render speed of the built-in corpus (seconds of 4-stem audio per
    CPU-second and per wall second) and disk use per minute of audio;
  * loader: seconds of training audio per second that ChunkLoader yields,
    synchronously (num_workers=0) and with background prefetch, for the
    cpu_small shape (2 s x 4) and the paper shape (10 s x 16);
  * reads: one chunk of all five stems through soundfile vs through musdb.
The consumer does nothing between batches, so "with prefetch" is the
loader's own ceiling; a training step in between only helps it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from bench import common


def bench_corpus(root: str, tracks: int, seconds: float, workers: int) -> dict:
  from attnsep_jax.corpus import generate_corpus, soundfont_names
  meta = generate_corpus(root, tracks=tracks, test_tracks=max(1, tracks // 4), seconds=seconds,
                         seed=0, workers=workers, progress=True)
  audio_s = len(meta["tracks"]) * seconds
  size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
  return dict(tracks=len(meta["tracks"]), audio_seconds=audio_s, workers=workers,
              wall_s=meta["wall_seconds"], cpu_s=meta["cpu_seconds"],
              audio_s_per_cpu_s=audio_s / meta["cpu_seconds"],
              audio_s_per_wall_s=audio_s / meta["wall_seconds"],
              mib_per_audio_minute=size / 2**20 / (audio_s / 60),
              soundfont=" + ".join(soundfont_names(meta)))


def bench_loader(root: str, segment_seconds: float, batch_size: int, workers: int,
                 prefetch: int, batches: int) -> dict:
  from attnsep_jax.data.loader import ChunkLoader
  loader = ChunkLoader(root=root, segment_seconds=segment_seconds, batch_size=batch_size,
                       num_workers=workers, prefetch_batches=prefetch, seed=0)
  next(loader)                     # warm the pool and the page cache
  start = time.perf_counter()
  for _ in range(batches):
    next(loader)
  wall = time.perf_counter() - start
  loader.close()
  return dict(segment_seconds=segment_seconds, batch_size=batch_size, num_workers=workers,
              prefetch_batches=prefetch, batches=batches, batch_s=wall / batches,
              audio_s_per_s=batches * batch_size * segment_seconds / wall)


def bench_reads(root: str, chunk_seconds: float, reps: int) -> list[dict]:
  from attnsep_jax import SOURCES
  from attnsep_jax.data.musdb import TrackIndex
  index = TrackIndex(root)
  track = index.tracks("train")[0]
  frames = int(chunk_seconds * track.sample_rate)
  stems = ("mixture",) + SOURCES
  times = []
  for _ in range(reps):
    _, t = common.timed(index.read, track, 0, frames, stems)
    times.append(t)
  rows = [dict(reader="soundfile", chunk_seconds=chunk_seconds, read_s=common.median(times))]
  try:
    import musdb
  except Exception as e:   # no ffmpeg: musdb refuses to import
    print(f"# musdb unavailable: {e}", file=sys.stderr)
    return rows
  db = musdb.DB(root=root, is_wav=True, subsets="train")
  mus_track = [t for t in db if t.name == track.name][0]
  times = []
  for _ in range(max(1, reps // 5)):
    mus_track.chunk_start, mus_track.chunk_duration = 0.0, chunk_seconds
    _, t = common.timed(lambda: mus_track.stems)
    times.append(t)
  rows.append(dict(reader="musdb", chunk_seconds=chunk_seconds, read_s=common.median(times)))
  ours = index.read(track, 0, frames, stems)
  rows[-1]["same_samples"] = bool(np.array_equal(mus_track.stems.astype(np.float32)[:, :frames],
                                                 ours))
  rows[-1]["slowdown"] = rows[-1]["read_s"] / rows[0]["read_s"]
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--corpus", help="existing corpus (default: generate one in a temp folder)")
  parser.add_argument("--tracks", type=int, default=12, help="train tracks to generate")
  parser.add_argument("--seconds", type=float, default=20.0, help="length of generated tracks")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="render processes and loader threads")
  parser.add_argument("--batches", type=int, default=8, help="batches timed per loader row")
  parser.add_argument("--reps", type=int, default=20, help="repetitions of the read timing")
  parser.add_argument("--json", default=os.path.join(common.REPO_ROOT, "bench", "results",
                                                     "loader.json"),
                      help="where to write the results ('' for nowhere)")
  args = parser.parse_args(argv)
  common.warn_if_busy()
  tmp = None
  results = {"machine": common.machine_info()}
  try:
    if args.corpus:
      root = args.corpus
    else:
      tmp = tempfile.mkdtemp(prefix="attnsep-bench-")
      root = os.path.join(tmp, "synth")
      results["corpus"] = bench_corpus(root, args.tracks, args.seconds, args.workers)
      common.print_table([results["corpus"]], list(results["corpus"]), "corpus rendering")
    rows = []
    for seconds, batch in ((2.0, 4), (10.0, 16)):
      for workers, prefetch in ((0, 0), (args.workers, 4)):
        rows.append(bench_loader(root, seconds, batch, workers, prefetch,
                                 args.batches if seconds < 5 else max(2, args.batches // 2)))
    results["loader"] = rows
    common.print_table(rows, ["segment_seconds", "batch_size", "num_workers", "prefetch_batches",
                              "batch_s", "audio_s_per_s"], "loader throughput")
    results["reads"] = bench_reads(root, 2.0, args.reps)
    common.print_table(results["reads"], ["reader", "chunk_seconds", "read_s", "slowdown",
                                          "same_samples"], "5-stem chunk reads")
    results["peak_rss_mb"] = common.peak_rss_mb()
    common.write_json(args.json, results)
  finally:
    if tmp:
      shutil.rmtree(tmp, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
