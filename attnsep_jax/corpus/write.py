"""Writing the corpus: track folders, musdb's setup file and corpus.json.

The whole corpus is built in a staged folder (``attnsep_jax.files``) beside
its target and swapped in only when complete: an interrupted run or a full
disk leaves no partial corpus, and an earlier corpus at the target stays as it
was until the new one replaces it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from typing import Sequence

import numpy as np

from attnsep_jax import SAMPLE_RATE, SOURCES
from attnsep_jax.audio import pcm_bytes, write_audio
from attnsep_jax.corpus.compose import Song, compose
from attnsep_jax.corpus.render import (SOUNDFONT_LICENCES, default_soundfont, quantize,
                                       render_song, require_renderer)
from attnsep_jax.data.augment import rms_db
from attnsep_jax.files import staged_folder

FORMAT = "attnsep-synth-1"
STEMS = ("mixture",) + SOURCES
# What this tool writes in a corpus folder: all that --force may replace.
CORPUS_ENTRIES = ("train", "test", "mus.yaml", "corpus.json")
_SOUNDFONT_STREAM = 0x50F7


def track_name(number: int, song: Song) -> str:
  return f"Synth {number:04d} - {song.style.capitalize()} in {song.key_name}"


def make_track(job: dict) -> dict:
  """Composes, renders and writes one track folder; returns its metadata."""
  started = time.process_time()
  song = compose((job["seed"], job["number"]), job["seconds"])
  paths = stem_soundfonts(job["soundfonts"], job["seed"], job["number"])
  fonts = {}
  for path in set(paths.values()):
    with open(path, "rb") as f:
      fonts[path] = f.read()
  stems, instruments = render_song(song, {s: fonts[p] for s, p in paths.items()},
                                   job["sample_rate"])
  stems_q, mixture_q = quantize(stems, job["subtype"])
  name = track_name(job["number"], song)
  folder = os.path.join(job["root"], job["subset"], name)
  os.makedirs(folder)
  for stem, audio in zip(STEMS, [mixture_q] + list(stems_q)):
    write_audio(os.path.join(folder, f"{stem}.wav"), audio, job["sample_rate"],
                subtype=job["subtype"])
  as_float = stems_q.astype(np.float32) / (32768.0 if job["subtype"] == "PCM_16" else 1.0)
  return dict(
      name=name, subset=job["subset"], number=job["number"], style=song.style,
      tempo_bpm=song.tempo_bpm, key=song.key_name,
      progressions={k: [int(d) + 1 for d in v] for k, v in song.progressions.items()},
      sections=[s["kind"] for s in song.sections], bass_figure=song.bass_figure,
      instruments=instruments,
      soundfonts={s: os.path.basename(p) for s, p in paths.items()},
      levels_dbfs={s: round(float(rms_db(a)), 2) for s, a in zip(SOURCES, as_float)},
      peak=round(float(np.max(np.abs(as_float.sum(axis=0)))), 4),
      cpu_seconds=time.process_time() - started)


def stem_soundfonts(soundfonts: list[str], seed: int, number: int) -> dict[str, str]:
  """The soundfont of each stem of track ``number``: drawn independently per
  stem, so that a drum kit of one soundfont plays with a bass of another."""
  if len(soundfonts) == 1:
    return {s: soundfonts[0] for s in SOURCES}
  # A stream of its own (not the song's): adding soundfonts changes no song.
  rng = np.random.default_rng((seed, number, _SOUNDFONT_STREAM))
  drawn = rng.integers(len(soundfonts), size=len(SOURCES))
  return {s: soundfonts[i] for s, i in zip(SOURCES, drawn)}


def soundfont_names(meta: dict) -> list[str]:
  """The soundfonts a corpus.json records (older corpora record one, as ``soundfont``)."""
  fonts = meta.get("soundfonts") or [meta.get("soundfont") or {}]
  return [f.get("name", "?") for f in fonts]


def mus_yaml(validation: list[str], sample_rate: int) -> dict:
  """A musdb setup file (musdb's mus.yaml keys) with our validation tracks."""
  return {
      "sample_rate": float(sample_rate),
      "sources": {s: f"{s}.wav" for s in ("vocals", "drums", "bass", "other")},
      "mixture": "mixture.wav",
      "stem_ids": {"mixture": 0, "drums": 1, "bass": 2, "other": 3, "vocals": 4},
      "targets": {"vocals": {"vocals": 1}, "drums": {"drums": 1}, "bass": {"bass": 1},
                  "other": {"other": 1},
                  "accompaniment": {"bass": 1, "drums": 1, "other": 1},
                  "linear_mixture": {"vocals": 1, "bass": 1, "drums": 1, "other": 1}},
      "validation_tracks": validation,
  }


def generate_corpus(out: str, tracks: int = 12, test_tracks: int = 4, valid_tracks: int | None = None,
                    seconds: float = 20.0, seed: int = 0,
                    soundfont: str | Sequence[str] | None = None,
                    sample_rate: int = SAMPLE_RATE, subtype: str = "PCM_16", workers: int = 1,
                    force: bool = False, progress: bool = False) -> dict:
  """Writes a corpus to ``out`` and returns its metadata (also in out/corpus.json).

  Args:
    out: corpus folder; must be absent or empty, or a previous corpus with ``force``.
    tracks: number of tracks in the train subset (validation tracks included).
    test_tracks: number of tracks in the test subset.
    valid_tracks: train tracks listed for validation (None: max(1, tracks // 6)).
    seconds: length of each track, in seconds.
    seed: selects every song.
    soundfont: .sf2/.sf3 file, or several: each stem of each track is then
      rendered with one of them, drawn at random (None: ``default_soundfont()``).
    sample_rate: in Hz.
    subtype: "PCM_16" (as MUSDB18-HQ; exact sums) or "FLOAT".
    workers: processes rendering tracks in parallel.
    force: replace an existing corpus (a folder holding corpus.json).
    progress: show a tqdm progress bar.
  Raises:
    FileExistsError, FileNotFoundError, ValueError: unusable arguments (nothing written).
    MissingRendererError: tinysoundfont is not installed.
    WriteError: the corpus could not be written (a full disk); nothing partial is left.
  """
  out = os.path.abspath(out)
  _check_output(out, force)
  _check_arguments(tracks, test_tracks, seconds, subtype)
  soundfonts = _check_soundfonts(soundfont)
  valid_tracks = max(1, tracks // 6) if valid_tracks is None else valid_tracks
  if valid_tracks >= tracks and tracks > 1:
    raise ValueError("valid_tracks must leave at least one training track")
  require_renderer()
  earlier = os.path.isdir(out) and bool(os.listdir(out))
  intact = f"the earlier corpus in {out} is intact" if earlier else ""
  what = f"the corpus ({tracks + test_tracks} tracks of {seconds:g} s)"
  needed = _corpus_bytes(tracks + test_tracks, seconds, sample_rate, subtype)
  with staged_folder(out, what, overwrite=os.path.exists(out), intact=intact,
                     needed_bytes=needed) as staging:
    jobs = [dict(root=staging, subset="train" if n <= tracks else "test", number=n, seed=seed,
                 seconds=seconds, soundfonts=soundfonts, sample_rate=sample_rate, subtype=subtype)
            for n in range(1, tracks + test_tracks + 1)]
    started = time.perf_counter()
    results = _write_tracks(staging, jobs, workers, progress)
    wall = time.perf_counter() - started
    meta = _write_metadata(staging, results, valid_tracks, seed, seconds, sample_rate,
                           subtype, soundfonts)
  # Timings stay out of corpus.json so that the same seed gives the same files.
  return dict(meta, wall_seconds=wall,
              cpu_seconds=sum(r["cpu_seconds"] for r in results), root=out)


def _write_tracks(root: str, jobs: list[dict], workers: int, progress: bool) -> list[dict]:
  """Renders and writes every track under ``root``; their metadata in track order."""
  for subset in ("train", "test"):
    os.makedirs(os.path.join(root, subset))
  results = _run_jobs(jobs, workers, progress)
  return sorted(results, key=lambda r: r["number"])


def _write_metadata(root: str, results: list[dict], valid_tracks: int, seed: int,
                    seconds: float, sample_rate: int, subtype: str,
                    soundfonts: list[str]) -> dict:
  """Writes mus.yaml and corpus.json under ``root``; returns corpus.json's content.

  Sets each result's ``split`` (train, valid or test).
  """
  import yaml
  train = [r for r in results if r["subset"] == "train"]
  valid = sorted(r["name"] for r in train[len(train) - valid_tracks:]) if valid_tracks else []
  for r in results:
    r["split"] = "valid" if r["name"] in valid else r["subset"]
  with open(os.path.join(root, "mus.yaml"), "w") as f:
    yaml.safe_dump(mus_yaml(valid, sample_rate), f, sort_keys=False)
  meta = dict(
      format=FORMAT, seed=seed, seconds=seconds, sample_rate=sample_rate, subtype=subtype,
      soundfonts=[dict(path=p, name=os.path.basename(p), sha256=_sha256(p),
                       licence=SOUNDFONT_LICENCES.get(os.path.basename(p), "see its source"))
                  for p in soundfonts],
      validation_tracks=valid,
      tracks=[{k: v for k, v in r.items() if k != "cpu_seconds"} for r in results])
  with open(os.path.join(root, "corpus.json"), "w") as f:
    json.dump(meta, f, indent=1)
  return meta


def _run_jobs(jobs, workers: int, progress: bool) -> list[dict]:
  from tqdm import tqdm
  results = []
  # The bar ends its line even on an error, so that the error has a line of its own.
  with tqdm(total=len(jobs), unit="track", disable=not progress, desc="rendering") as bar:
    if workers <= 1 or len(jobs) == 1:
      for job in jobs:
        results.append(make_track(job))
        bar.update()
    else:
      # spawn, not fork: the caller may hold threads (JAX, prefetchers).
      with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        for result in pool.imap_unordered(make_track, jobs):
          results.append(result)
          bar.update()
  return results


def _corpus_bytes(num_tracks: int, seconds: float, sample_rate: int, subtype: str) -> int:
  """The size of the wav files of a corpus (5 stereo files per track)."""
  return num_tracks * len(STEMS) * pcm_bytes(int(round(seconds * sample_rate)), 2, subtype)


def _check_arguments(tracks: int, test_tracks: int, seconds: float, subtype: str) -> None:
  if tracks < 1 or test_tracks < 0 or seconds <= 0:
    raise ValueError("need tracks >= 1, test_tracks >= 0 and seconds > 0")
  if subtype not in ("PCM_16", "FLOAT"):
    raise ValueError(f"subtype must be PCM_16 or FLOAT, got {subtype!r}")


def _check_output(out: str, force: bool) -> None:
  """Refuses, before anything is written, an ``out`` that may not be replaced."""
  if not os.path.exists(out):
    return
  if not os.path.isdir(out):
    raise FileExistsError(f"{out} exists and is not a folder")
  entries = os.listdir(out)
  if not entries:
    return
  is_corpus = os.path.isfile(os.path.join(out, "corpus.json"))
  if not force:
    raise FileExistsError(f"{out} is not empty; pass --force to replace "
                          f"{'the corpus in it' if is_corpus else 'it'}")
  if not is_corpus:
    raise FileExistsError(f"{out} is not empty and holds no corpus.json; refusing to delete "
                          "what this tool did not write, even with --force")
  others = sorted(set(entries) - set(CORPUS_ENTRIES))
  if others:
    raise FileExistsError(f"{out} holds files besides a corpus ({', '.join(others[:5])}); "
                          "move them away to replace the corpus")


def _check_soundfonts(soundfont: str | Sequence[str] | None) -> list[str]:
  """Absolute paths of the soundfonts, each an existing file, none twice."""
  soundfont = default_soundfont() if soundfont is None else soundfont
  paths = [os.path.abspath(p) for p in ([soundfont] if isinstance(soundfont, str) else soundfont)]
  if not paths:
    raise ValueError("need at least one soundfont")
  for path in paths:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"soundfont not found: {path}")
  if len(set(paths)) < len(paths):
    raise ValueError("a soundfont is given twice")
  return paths


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()
