"""Stems on disk: which stems, where, in what format, and the one writer.

``write_stems`` streams separated blocks into one hidden partial file per
stem (``files.staged_file``), at the song's own rate and channel count, and
renames them all when every stem is complete.  mp3 stems are written as
float wav first and encoded with ffmpeg before the renames, so a failed
encode leaves no stem either.  A failed write (a full disk above all)
removes every partial stem and raises ``files.WriteError`` with one line:
which stem of which song, where, the size needed, what is intact, how to go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import subprocess
from typing import Iterator

import numpy as np
import soundfile as sf

from attnsep_jax import SOURCES, files
from attnsep_jax.audio import os_error

SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}
BYTES_PER_SAMPLE = {"16": 2, "24": 3, "float": 4}
# FLAC holds integers only; 24 bits, as Demucs writes it. mp3 is encoded
# from float.
DEFAULT_BITS = {"wav": "float", "flac": "24", "mp3": "float"}
DEFAULT_FILENAME = "{track}/{stem}.{ext}"   # Demucs' layout
INTACT = "stems of songs separated before are intact"
RESUME = "free some space and separate the song again"


class EncodeError(RuntimeError):
  """ffmpeg could not encode an mp3 stem; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Outputs:
  """What ``separate_file`` writes for each song.

  Attributes:
    stems: stem names: model sources, ``no_<source>`` (the mixture minus that
      source) and ``accompaniment`` (= ``no_vocals``).
    fmt: ``wav``, ``flac`` or ``mp3`` (encoded with ffmpeg).
    bits: ``16``, ``24`` or ``float`` for wav/flac (None: float for wav, 24
      for flac, which holds integers only); mp3 ignores it.
    filename: path of each stem under the output folder, with ``{track}``
      (the song's file name without extension), ``{stem}`` and ``{ext}``.
    mp3_bitrate_kbps: constant bitrate of mp3 stems.
  """
  stems: tuple[str, ...] = SOURCES
  fmt: str = "wav"
  bits: str | None = None
  filename: str = DEFAULT_FILENAME
  mp3_bitrate_kbps: int = 320

  @property
  def sample_bits(self) -> str:
    """The sample format actually written: "16", "24" or "float"."""
    return self.bits or DEFAULT_BITS[self.fmt]

  def estimated_bytes(self, frames: int, channels: int, rate: int) -> int:
    """About the disk space all stems of a song take (``frames`` at ``rate`` Hz)."""
    per_stem = frames * channels * BYTES_PER_SAMPLE["float" if self.fmt == "mp3"
                                                    else self.sample_bits]
    if self.fmt == "mp3":   # the float wav, then the mp3 beside it
      per_stem += int(frames / rate * self.mp3_bitrate_kbps * 125)
    return len(self.stems) * per_stem


def stem_audio(name: str, block: np.ndarray) -> np.ndarray:
  """Stem ``name`` of a separated block (sources, n, channels)."""
  if name in SOURCES:
    return block[SOURCES.index(name)]
  removed = "vocals" if name == "accompaniment" else name.removeprefix("no_")
  return block.sum(axis=0) - block[SOURCES.index(removed)]


def select_stems(stems: str | None = None, two_stems: str | None = None,
                 accompaniment: bool = False) -> tuple[str, ...]:
  """The stem names of the command-line options (ValueError when they clash)."""
  if stems and two_stems:
    raise ValueError("--stems and --two-stems exclude each other")
  if two_stems:
    if two_stems not in SOURCES:
      raise ValueError(f"--two-stems takes one of {', '.join(SOURCES)}, not {two_stems!r}")
    names = (two_stems, f"no_{two_stems}")
  elif stems:
    names = tuple(dict.fromkeys(n.strip() for n in stems.split(",") if n.strip()))
    unknown = [n for n in names if n not in SOURCES]
    if unknown or not names:
      raise ValueError(f"--stems takes names among {', '.join(SOURCES)}; got {stems!r}")
  else:
    names = SOURCES
  return names + (("accompaniment",) if accompaniment else ())


def output_paths(song_path: str, out_dir: str, outputs: Outputs) -> dict[str, str]:
  """Stem name -> the path it is written to."""
  track = os.path.splitext(os.path.basename(song_path))[0]
  return {name: os.path.join(out_dir, outputs.filename.format(track=track, stem=name,
                                                              ext=outputs.fmt))
          for name in outputs.stems}


class StemWriter:
  """Writes separated blocks into one open sound file per stem.

  Blocks come at the model's rate in stereo; each stem is resampled (soxr,
  streaming) to the song's rate and averaged to mono for a mono song.
  """

  def __init__(self, paths: dict[str, str], rate: int, channels: int, model_rate: int,
               outputs: Outputs):
    self.paths, self.rate, self.channels = paths, rate, channels
    self.model_rate, self.outputs = model_rate, outputs
    self.files: dict[str, sf.SoundFile] = {}
    self.resamplers = None
    self.clipped = 0
    self.current = next(iter(paths))   # the stem being written, for error messages

  def open(self) -> None:
    is_mp3 = self.outputs.fmt == "mp3"   # a float wav first, encoded at the end
    subtype = "FLOAT" if is_mp3 else SUBTYPES[self.outputs.sample_bits]
    container = "WAV" if is_mp3 else self.outputs.fmt.upper()
    self.clip = subtype != "FLOAT"
    for name, path in self.paths.items():
      self.current = name
      try:
        self.files[name] = sf.SoundFile(self._sound_path(name), "w", samplerate=self.rate,
                                        channels=self.channels, subtype=subtype,
                                        format=container)
      except (RuntimeError, sf.SoundFileError) as e:
        raise os_error(e) from e
    if self.rate != self.model_rate:
      import soxr
      self.resamplers = {name: soxr.ResampleStream(self.model_rate, self.rate, 2,
                                                   dtype="float32") for name in self.paths}

  def _sound_path(self, name: str) -> str:
    return self.paths[name] + ".wav" if self.outputs.fmt == "mp3" else self.paths[name]

  def write_block(self, block: np.ndarray) -> None:
    """Appends a separated block (sources, n, 2) to every stem."""
    for name in self.paths:
      self.current = name
      self.write(name, stem_audio(name, block))

  def write(self, name: str, audio: np.ndarray, last: bool = False) -> None:
    """Appends ``audio`` (n, 2), at the model's rate, to stem ``name``."""
    self.current = name
    if self.resamplers is not None:
      audio = self.resamplers[name].resample_chunk(audio, last=last)
    if self.channels == 1:
      audio = audio.mean(axis=1, keepdims=True)
    if self.clip:
      over = np.abs(audio) > 1.0
      self.clipped += int(over.sum())
      audio = np.clip(audio, -1.0, 1.0)
    try:
      self.files[name].write(np.ascontiguousarray(audio))
    except (RuntimeError, sf.SoundFileError) as e:
      raise os_error(e) from e

  def finish(self) -> None:
    """Flushes and closes every stem (and encodes mp3 stems)."""
    for name in self.paths:
      if self.resamplers is not None:
        self.write(name, np.zeros((0, 2), np.float32), last=True)
      self.current = name
      try:
        self.files.pop(name).close()
      except (RuntimeError, sf.SoundFileError) as e:
        raise os_error(e) from e
    if self.outputs.fmt == "mp3":
      for name in self.paths:
        self.current = name
        self._encode_mp3(self._sound_path(name), self.paths[name])

  def _encode_mp3(self, wav: str, mp3: str) -> None:
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", wav, "-codec:a", "libmp3lame",
         "-b:a", f"{self.outputs.mp3_bitrate_kbps}k", "-f", "mp3", mp3],
        capture_output=True, text=True)
    if done.returncode != 0:
      reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
      if files.is_disk_full(OSError(reason)):
        raise OSError(errno.ENOSPC, reason)
      raise EncodeError(f"ffmpeg could not encode the {self.current} stem ({reason})")
    os.remove(wav)

  def discard(self) -> None:
    """Closes what is open and removes the mp3 stems' intermediate wav files."""
    for f in self.files.values():
      with contextlib.suppress(Exception):
        f.close()
    self.files.clear()
    if self.outputs.fmt == "mp3":
      for name in self.paths:
        with contextlib.suppress(OSError):
          os.remove(self._sound_path(name))


@contextlib.contextmanager
def write_stems(targets: dict[str, str], *, song: str, rate: int, channels: int,
                frames: int, model_rate: int, outputs: Outputs, intact: str = INTACT,
                resume: str = RESUME) -> Iterator[StemWriter]:
  """Yields a StemWriter whose stems appear under ``targets`` when the block ends.

  Args:
    targets: stem name -> final path (its folder must exist).
    song: the song's name, for error messages.
    rate: the song's rate in Hz, which the stems keep.
    channels: the song's channels (1 or 2), which the stems keep.
    frames: the song's length in samples at ``rate``, for the size needed.
    model_rate: the rate of the blocks written, in Hz.
    outputs: format and sample format of the stems.
    intact: what a failed write leaves intact (for its message).
    resume: how to go on after a failed write (for its message).
  Raises:
    files.WriteError: a write failed; every partial stem is removed.
    EncodeError: ffmpeg failed to encode an mp3 stem; likewise.
  """
  with contextlib.ExitStack() as stack:
    staged = {name: stack.enter_context(files.staged_file(
        path, f"the {name} stem of '{song}'", suffix=f".{outputs.fmt}"))
        for name, path in targets.items()}
    writer = StemWriter(staged, rate, channels, model_rate, outputs)
    try:
      writer.open()
      yield writer
      writer.finish()
    except OSError as e:
      if isinstance(e, files.WriteError):
        raise
      raise files.write_error(
          e, f"the {writer.current} stem of '{song}'", targets[writer.current],
          outputs.estimated_bytes(frames, channels, rate), intact, resume) from e
    finally:
      writer.discard()
