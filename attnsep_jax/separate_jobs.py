"""``attnsep separate --jobs N``: N songs at a time, in worker processes on the CPU.

XLA already spreads one song over every core, but a song's work has serial
stretches (decoding, resampling, writing, small batches) that leave cores
idle, which other songs can use.  Each worker is a
spawned process (forking a process that has started JAX's threads is
unsafe) pinned to its own share of the cores, so that N workers do not fight
over them; it loads the model once and then takes songs one after another.
Results come back in the songs' order, so the output and the summary are
those of ``--jobs 1``, and the stems are bit-identical (tested).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
from typing import Iterator

import numpy as np

from attnsep_jax.separate import Outcome, Run, separate_song

# The persistent compilation cache, passed on so that workers compile once.
_JAX_SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                 "jax_persistent_cache_min_entry_size_bytes")
_worker_model = None   # (model, params, config) in a worker process


def cpu_shares(jobs: int) -> list[list[int] | None]:
  """The cores each of ``jobs`` workers may use: contiguous, disjoint while
  there are enough (None: this system does not pin processes)."""
  if not hasattr(os, "sched_getaffinity"):
    return [None] * jobs
  cores = sorted(os.sched_getaffinity(0))
  shares = [list(map(int, share)) for share in np.array_split(cores, jobs)]
  return [share or [cores[i % len(cores)]] for i, share in enumerate(shares)]


def _jax_settings() -> dict:
  if "jax" not in sys.modules:
    return {}
  import jax
  return {name: getattr(jax.config, name) for name in _JAX_SETTINGS
          if getattr(jax.config, name, None) is not None}


def _start_worker(checkpoint: str, shares, settings: dict) -> None:
  """A worker's initializer: its cores, the CPU backend, the model."""
  global _worker_model
  share = shares.get()
  if share:
    os.sched_setaffinity(0, share)   # before JAX sizes its thread pool
  os.environ["JAX_PLATFORMS"] = "cpu"   # N processes cannot share one accelerator
  import jax
  for name, value in settings.items():
    jax.config.update(name, value)
  from attnsep_jax.export import load_model
  config, model, params = load_model(checkpoint)
  _worker_model = (model, params, config)


def _separate_in_worker(song: str, run: Run) -> Outcome:
  return separate_song(song, run, *_worker_model)


def parallel_outcomes(songs: list[str], run: Run, checkpoint: str,
                      jobs: int) -> Iterator[Outcome]:
  """Each song's Outcome, in the songs' order, separated by ``jobs`` workers.

  Closing the iterator early cancels the songs not yet started.
  """
  context = multiprocessing.get_context("spawn")
  shares = context.SimpleQueue()
  for share in cpu_shares(jobs):
    shares.put(share)
  pool = concurrent.futures.ProcessPoolExecutor(
      jobs, mp_context=context, initializer=_start_worker,
      initargs=(checkpoint, shares, _jax_settings()))
  try:
    futures = [pool.submit(_separate_in_worker, song, run) for song in songs]
    for song, future in zip(songs, futures):
      try:
        yield future.result()
      except concurrent.futures.process.BrokenProcessPool:
        yield Outcome(song, error="its worker process died (out of memory?)")
  finally:
    pool.shutdown(wait=True, cancel_futures=True)
