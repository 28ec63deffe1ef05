"""The streaming training loader, whole-track iteration and device sharding.

Determinism contract: row ``r`` of global batch ``i`` is a pure function of
``(seed, i, r)`` and the corpus files.  Process ``p`` of ``P`` computes rows
``[p * b/P, (p+1) * b/P)`` of each global batch, so the union over processes
is the single-process batch, whatever ``P`` is.  Resuming is then only the
batch counter: ``state_dict()`` returns it and ``load_state_dict()`` sets it.

Prefetch: a thread pool computes batches ``i+1 .. i+prefetch_batches`` while
batch ``i`` is in use; results are handed out in order.  Threads suffice
because soundfile (libsndfile) and NumPy release the GIL for the heavy work.
"""

from __future__ import annotations

import concurrent.futures
import warnings
from typing import Iterator

import numpy as np

from attnsep_jax import SOURCES
from attnsep_jax.data import augment
from attnsep_jax.data.musdb import DataError, Track, TrackIndex

# Redraws of a near-silent source before accepting it (a source absent from
# every track, e.g. no vocals anywhere, must not loop forever).
SILENCE_RETRIES = 10


class ChunkLoader:
  """Infinite iterator of random training chunks as NumPy batches.

  Yields ``{"mixture": (b, time, 2), "sources": (b, 4, time, 2)}`` float32
  with ``b = batch_size / process_count`` and ``time = segment_seconds *
  sample_rate``; the mixture is exactly the sum of the (augmented) sources.

  Args (constructor):
    root: corpus folder in MUSDB18(-HQ) layout (see attnsep_jax.data.musdb).
    is_wav: True for wav folders (MUSDB18-HQ, the built-in corpus), False
      for MUSDB18 .stem.mp4 files.
    sample_rate: expected sample rate of the corpus, in Hz.
    segment_seconds: length of each training chunk, in seconds.
    batch_size: GLOBAL batch size, split evenly over processes.
    seed: selects the sequence of batches.
    split: which train tracks: "train" (musdb's train split), "valid" or
      "train+valid".
    remix_probability: chance that an example takes each source from an
      independently drawn track and position (0: never remix).
    gain_range: (low, high) linear gain drawn per source, or None.
    channel_swap: swap left/right per source with probability 1/2.
    polarity_flip: negate each source with probability 1/2.
    shift_seconds: each source is cropped at its own random offset in
      [0, shift_seconds] from a longer read (0: no time shift).
    varispeed_probability: chance that an example is played faster or slower
      (pitch and tempo together, see ``augment.varispeed``); 0: never.
    varispeed_semitones: largest pitch change of varispeed, in semitones.
    eq_probability: chance that each source is reshaped by its own random
      equaliser (see ``augment.random_eq``); 0: never.
    eq_max_db: largest boost or cut of a random-EQ band, in dB.
    silence_threshold_db: redraw a source chunk whose RMS is below this many
      dBFS (up to 10 times; None: keep silent chunks, as Demucs does).
    prefetch_batches: batches computed ahead in the background (0: none).
    num_workers: threads computing batches (0: compute in the caller).
    process_index: this process's index (multi-host).
    process_count: number of processes sharing the global batch.
  Raises:
    DataError: unusable corpus (see TrackIndex), no tracks in the split, or
      a corpus sample rate other than ``sample_rate``.
    ValueError: batch_size not divisible by process_count, bad arguments.
  """

  def __init__(self, root: str, is_wav: bool = True, sample_rate: int = 44100,
               segment_seconds: float = 10.0, batch_size: int = 16, seed: int = 42,
               split: str = "train", remix_probability: float = 1.0,
               gain_range: tuple[float, float] | None = (0.25, 1.25),
               channel_swap: bool = True, polarity_flip: bool = True,
               shift_seconds: float = 1.0, varispeed_probability: float = 0.0,
               varispeed_semitones: float = 2.0, eq_probability: float = 0.0,
               eq_max_db: float = 6.0, silence_threshold_db: float | None = None,
               prefetch_batches: int = 4, num_workers: int = 2,
               process_index: int = 0, process_count: int = 1):
    if batch_size <= 0 or batch_size % process_count:
      raise ValueError(f"batch_size={batch_size} must be a positive multiple of "
                       f"process_count={process_count}")
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index={process_index} not in [0, {process_count})")
    if segment_seconds <= 0 or shift_seconds < 0:
      raise ValueError("segment_seconds must be > 0 and shift_seconds >= 0")
    if gain_range is not None and not 0 <= gain_range[0] <= gain_range[1]:
      raise ValueError(f"gain_range must be (low, high) with 0 <= low <= high, got {gain_range}")
    self.index = TrackIndex(root, is_wav=is_wav)
    if self.index.sample_rate != sample_rate:
      raise DataError(f"{self.index.root}: corpus sample rate is {self.index.sample_rate} Hz "
                      f"but data.sample_rate={sample_rate}; resample the corpus or change it")
    self.tracks: list[Track] = self.index.tracks("train", split)
    if not self.tracks:
      raise DataError(f"{self.index.root}: no training tracks in split {split!r}")
    self.sample_rate = int(sample_rate)
    self.segment_samples = int(round(segment_seconds * sample_rate))
    self.shift_samples = int(round(shift_seconds * sample_rate))
    self.batch_size, self.seed = int(batch_size), int(seed)
    self.process_index, self.process_count = int(process_index), int(process_count)
    self.local_batch_size = self.batch_size // self.process_count
    self.remix_probability = float(remix_probability)
    self.gain_range = tuple(gain_range) if gain_range is not None else None
    self.channel_swap, self.polarity_flip = bool(channel_swap), bool(polarity_flip)
    self.silence_threshold_db = silence_threshold_db
    self.varispeed_probability = float(varispeed_probability)
    self.varispeed_semitones = float(varispeed_semitones)
    self.eq_probability, self.eq_max_db = float(eq_probability), float(eq_max_db)
    self.prefetch_batches = int(prefetch_batches)
    self.num_workers = int(num_workers)
    # Each second of audio is equally likely, as in Demucs's segment dataset;
    # short tracks count as one segment so that they are still drawn.
    self._weights = np.array([max(t.num_samples, self.segment_samples) for t in self.tracks],
                             np.float64)
    short = [t.name for t in self.tracks
             if t.num_samples < self.segment_samples + self.shift_samples]
    if short:
      warnings.warn(f"{len(short)} of {len(self.tracks)} training tracks are shorter than "
                    f"one segment plus shift ({segment_seconds} + {shift_seconds} s) and are "
                    f"zero-padded: {', '.join(short[:5])}{' ...' if len(short) > 5 else ''}",
                    stacklevel=2)
    self._next = 0
    self._pending: dict[int, concurrent.futures.Future] = {}
    self._pool = None

  # --------------------------------------------------------------- examples
  def example(self, batch_index: int, row: int, out: np.ndarray | None = None) -> np.ndarray:
    """Sources ``(4, time, 2)`` of row ``row`` of global batch ``batch_index``.

    Writes into ``out`` (a float32 ``(4, time, 2)`` view) when given.
    """
    rng = np.random.default_rng([self.seed, batch_index, row])
    num_sources = len(SOURCES)
    wanted = self.segment_samples + self.shift_samples
    speed = augment.varispeed_factor(rng, self.varispeed_probability, self.varispeed_semitones)
    read = int(np.ceil(wanted * speed))
    threshold = self.silence_threshold_db
    picks, remixed = augment.remix_tracks(rng, num_sources, self._weights,
                                          self.remix_probability)
    long = np.empty((num_sources, read, 2), np.float32)        # segment + shift
    if remixed:
      # Independent track and position per source.
      for s in range(num_sources):
        track = self.tracks[picks[s]]
        for attempt in range(SILENCE_RETRIES + 1):
          start = self._draw_start(track, rng, read)
          self.index.read(track, start, read, (SOURCES[s],), out=long[s:s + 1])
          if (threshold is None or attempt == SILENCE_RETRIES
              or augment.rms_db(long[s, :self.segment_samples]) >= threshold):
            break
          track = self.tracks[rng.choice(len(self.tracks), p=self._weights / self._weights.sum())]
    else:
      track = self.tracks[picks[0]]
      for attempt in range(SILENCE_RETRIES + 1):
        self.index.read(track, self._draw_start(track, rng, read), read, out=long)
        if (threshold is None or attempt == SILENCE_RETRIES
            or np.all(augment.rms_db(long[:, :self.segment_samples]) >= threshold)):
          break
    if read != wanted:
      long = augment.varispeed(long, wanted)
    cropped = augment.time_shift(long, rng, self.segment_samples)
    # Off means no draws either: the batches of configs without EQ stay as they were.
    if self.eq_probability > 0:
      cropped = augment.random_eq(cropped, rng, self.eq_probability, self.eq_max_db,
                                  self.sample_rate)
    return augment.augment_sources(cropped, rng, self.gain_range, self.channel_swap,
                                   self.polarity_flip, out=out)

  def _draw_start(self, track: Track, rng: np.random.Generator, frames: int) -> int:
    return int(rng.integers(0, max(track.num_samples - frames, 0) + 1))

  def batch(self, batch_index: int) -> dict:
    """This process's rows of global batch ``batch_index`` (pure, thread-safe)."""
    first = self.process_index * self.local_batch_size
    sources = np.empty((self.local_batch_size, len(SOURCES), self.segment_samples, 2),
                       np.float32)                                 # (b, 4, time, 2)
    for r in range(self.local_batch_size):
      self.example(batch_index, first + r, out=sources[r])
    return {"mixture": augment.mix(sources), "sources": sources}

  # --------------------------------------------------------------- iteration
  def __iter__(self) -> Iterator[dict]:
    return self

  def __next__(self) -> dict:
    i = self._next
    if self.num_workers <= 0:
      batch = self.batch(i)
    else:
      self._schedule(i)
      batch = self._pending.pop(i).result()
    # Counted as consumed once handed out: state_dict() after n batches says n.
    self._next = i + 1
    if self.num_workers > 0:
      self._schedule(i + 1)
    return batch

  def _schedule(self, first: int) -> None:
    if self._pool is None:
      self._pool = concurrent.futures.ThreadPoolExecutor(
          max_workers=self.num_workers, thread_name_prefix="attnsep-data")
    for j in range(first, first + self.prefetch_batches + 1):
      if j not in self._pending:
        self._pending[j] = self._pool.submit(self.batch, j)

  def state_dict(self) -> dict:
    """The position as a small JSON-able dict."""
    return {"next_batch": self._next, "seed": self.seed, "batch_size": self.batch_size}

  def load_state_dict(self, state: dict) -> None:
    """Continues from a ``state_dict()``: the next batch is the one it names."""
    if int(state.get("seed", self.seed)) != self.seed:
      raise ValueError(f"loader state is for seed {state['seed']}, this loader has seed "
                       f"{self.seed}; the batches would differ")
    if int(state.get("batch_size", self.batch_size)) != self.batch_size:
      raise ValueError(f"loader state is for global batch {state['batch_size']}, this "
                       f"loader has {self.batch_size}; the batches would differ")
    self._drop_pending()
    self._next = int(state["next_batch"])

  def _drop_pending(self) -> None:
    for future in self._pending.values():
      future.cancel()
    self._pending.clear()

  def close(self, wait: bool = True) -> None:
    """Stops the prefetch threads (the loader can still be iterated after)."""
    self._drop_pending()
    if self._pool is not None:
      self._pool.shutdown(wait=wait, cancel_futures=True)
      self._pool = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __del__(self):
    # May run in a worker thread, which cannot join itself: do not wait.
    try:
      self.close(wait=False)
    except Exception:
      pass


def validation_tracks(root: str, is_wav: bool = True, sample_rate: int = 44100,
                      split: str = "valid", setup_file: str | None = None,
                      max_seconds: float | None = None):
  """Whole tracks, sorted by name: yields ``(name, mixture (T, 2), sources (4, T, 2))``.

  Args:
    root: corpus folder in MUSDB18(-HQ) layout.
    is_wav: as for ChunkLoader.
    sample_rate: tracks at another rate are resampled to it (Hz).
    split: "valid" (musdb's validation tracks of the train subset), "train"
      (the rest of the train subset) or "test" (the test subset).
    setup_file: as for TrackIndex (None: root/mus.yaml or musdb's list).
    max_seconds: keep only the first ``max_seconds`` of each track (None: all).
  """
  index = TrackIndex(root, is_wav=is_wav, setup_file=setup_file)
  tracks = index.tracks("test") if split == "test" else index.tracks("train", split)
  for track in tracks:
    frames = None if max_seconds is None else int(round(max_seconds * track.sample_rate))
    audio = index.read(track, 0, None if frames is None else min(frames, track.num_samples),
                       stems=("mixture",) + SOURCES)                # (5, T, 2)
    if track.sample_rate != sample_rate:
      from attnsep_jax.audio import resample
      audio = np.stack([resample(a, track.sample_rate, sample_rate) for a in audio])
    yield track.name, audio[0], audio[1:]
