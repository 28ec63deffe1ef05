"""Separate songs into stems: ``attnsep-separate SONG... --checkpoint DIR --out DIR``.

Writes ``OUT/<song>/{drums,bass,other,vocals}.<ext>`` (and ``accompaniment``
with ``--accompaniment``).  Reads any file libsndfile reads (wav, flac, ogg,
mp3 with libsndfile >= 1.1), at any sample rate (resampled with soxr to the
model's rate and back), mono or stereo (mono comes back as mono).  The audio is
streamed: input read and stems written segment by segment, so memory does not
grow with the song.  Stems are written to hidden temporary files and renamed
when complete; existing outputs are never replaced without ``--force``.  A bad
file gets a one-line error and the others are still processed; the exit status
is 0 only if every song succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile

import numpy as np
import soundfile as sf

from attnsep_jax import SOURCES

SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}
SEEKABLE_FORMATS = {"WAV", "WAVEX", "FLAC", "AIFF", "W64", "RF64", "CAF"}
BLOCK_FRAMES = 1 << 18


class SongError(Exception):
  """A song that cannot be separated; the message is one line for the user."""


def inspect_song(path: str) -> sf._SoundFileInfo:
  """Checks that ``path`` is a readable, non-empty, finite, non-silent song."""
  if not os.path.exists(path):
    raise SongError("no such file")
  if os.path.isdir(path):
    raise SongError("is a directory, not an audio file")
  try:
    info = sf.info(path)
  except Exception as e:  # libsndfile's errors are RuntimeError/LibsndfileError
    raise SongError(f"unreadable as audio ({str(e).splitlines()[0]})") from None
  if info.frames <= 0:
    raise SongError("is empty (no samples)")
  if info.channels not in (1, 2):
    raise SongError(f"has {info.channels} channels; only mono and stereo are supported")
  peak = 0.0
  try:
    for block in sf.blocks(path, blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
      if not np.all(np.isfinite(block)):
        raise SongError("contains NaN or infinite samples")
      peak = max(peak, float(np.abs(block).max(initial=0.0)))
  except SongError:
    raise
  except Exception as e:
    raise SongError(f"is corrupt or truncated ({str(e).splitlines()[0]})") from None
  if peak == 0.0:
    raise SongError("is silent (every sample is zero); nothing to separate")
  return info


def _stream_to_wav(path: str, out_path: str, from_rate: int, to_rate: int) -> int:
  """Decodes ``path`` to a float32 stereo wav at ``to_rate``, block by block."""
  import soxr
  resampler = soxr.ResampleStream(from_rate, to_rate, 2, dtype="float32") \
      if from_rate != to_rate else None
  frames = 0
  with sf.SoundFile(out_path, "w", samplerate=to_rate, channels=2, subtype="FLOAT") as out:
    blocks = sf.blocks(path, blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True)
    for block in blocks:
      block = np.repeat(block, 2, axis=1) if block.shape[1] == 1 else block
      if resampler is not None:
        block = resampler.resample_chunk(block)
      out.write(block)
      frames += len(block)
    if resampler is not None:
      tail = resampler.resample_chunk(np.zeros((0, 2), np.float32), last=True)
      out.write(tail)
      frames += len(tail)
  return frames


class _StemWriter:
  """Writes stems to hidden temp files beside their targets; ``commit`` renames."""

  def __init__(self, targets: dict[str, str], rate: int, channels: int, subtype: str,
               model_rate: int, fmt: str):
    import soxr
    self.targets, self.channels = targets, channels
    self.temps = {name: os.path.join(os.path.dirname(p), f".{os.path.basename(p)}.partial")
                  for name, p in targets.items()}
    self.files = {name: sf.SoundFile(t, "w", samplerate=rate, channels=channels,
                                     subtype=subtype, format=fmt)
                  for name, t in self.temps.items()}
    self.resamplers = {name: soxr.ResampleStream(model_rate, rate, 2, dtype="float32")
                       for name in targets} if rate != model_rate else None
    self.clip = subtype != "FLOAT"
    self.clipped = 0

  def write(self, name: str, audio: np.ndarray, last: bool = False) -> None:
    # audio: (n, 2) at the model's rate
    if self.resamplers is not None:
      audio = self.resamplers[name].resample_chunk(audio, last=last)
    if self.channels == 1:
      audio = audio.mean(axis=1, keepdims=True)
    if self.clip:
      over = np.abs(audio) > 1.0
      self.clipped += int(over.sum())
      audio = np.clip(audio, -1.0, 1.0)
    self.files[name].write(audio)

  def commit(self) -> None:
    for name in self.targets:
      if self.resamplers is not None:
        self.write(name, np.zeros((0, 2), np.float32), last=True)
      self.files[name].close()
    for name, target in self.targets.items():
      os.replace(self.temps[name], target)

  def abort(self) -> None:
    for name, f in self.files.items():
      with contextlib.suppress(Exception):
        f.close()
      with contextlib.suppress(OSError):
        os.remove(self.temps[name])


def separate_file(path: str, out_dir: str, model, params, config, *, fmt: str = "wav",
                  bits: str = "float", accompaniment: bool = False, force: bool = False,
                  shifts: int | None = None, progress: bool = True) -> dict[str, str]:
  """Separates one song into ``out_dir/<song>/``; returns stem name -> path."""
  from attnsep_jax.inference import iter_separate

  info = inspect_song(path)
  if fmt == "flac" and bits == "float":
    raise SongError("FLAC cannot hold float samples; use --bits 16 or 24")
  song = os.path.splitext(os.path.basename(path))[0]
  folder = os.path.join(out_dir, song)
  names = list(SOURCES) + (["accompaniment"] if accompaniment else [])
  targets = {n: os.path.join(folder, f"{n}.{fmt}") for n in names}
  existing = [p for p in targets.values() if os.path.exists(p)]
  if existing and not force:
    raise SongError(f"{existing[0]} exists; use --force to overwrite")
  os.makedirs(folder, exist_ok=True)
  model_rate = int(config.data.sample_rate)
  inference = dict(config.inference)
  if shifts is not None:
    inference["shifts"] = shifts

  with tempfile.TemporaryDirectory(prefix="attnsep-") as scratch:
    if info.samplerate != model_rate or info.format not in SEEKABLE_FORMATS or info.channels == 1:
      source = os.path.join(scratch, "input.wav")
      length = _stream_to_wav(path, source, info.samplerate, model_rate)
    else:
      source, length = path, info.frames
    writer = _StemWriter(targets, info.samplerate, info.channels, SUBTYPES[bits],
                         model_rate, fmt.upper())
    bar = None
    if progress:
      from tqdm import tqdm
      bar = tqdm(total=1, desc=song[:30], unit="seg", leave=False, file=sys.stderr)

    def report(done, total):
      if bar is not None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
      with sf.SoundFile(source) as reader:
        def read(start, frames):
          reader.seek(start)
          return reader.read(frames, dtype="float32", always_2d=True)

        for block in iter_separate(model, params, read, length, 2,
                                   sample_rate=model_rate, progress=report, **inference):
          for index, name in enumerate(SOURCES):   # block: (sources, n, 2)
            writer.write(name, block[index])
          if accompaniment:
            vocals = SOURCES.index("vocals")
            writer.write("accompaniment",
                         block.sum(axis=0) - block[vocals])
      writer.commit()
    except BaseException:
      writer.abort()
      raise
    finally:
      if bar is not None:
        bar.close()
  if writer.clipped:
    print(f"{path}: warning: {writer.clipped} samples beyond full scale were clipped "
          "(use --bits float to keep them)", file=sys.stderr)
  return targets


def main(argv=None):
  parser = argparse.ArgumentParser(
      description="Separate songs into drums, bass, other and vocals stems.")
  parser.add_argument("songs", nargs="+", metavar="SONG", help="audio files")
  parser.add_argument("--checkpoint", required=True,
                      help="training workdir (train.py) or export (attnsep-export)")
  parser.add_argument("--out", required=True, help="folder for OUT/<song>/<stem> files")
  parser.add_argument("--format", choices=("wav", "flac"), default="wav")
  parser.add_argument("--bits", choices=tuple(SUBTYPES), default="float",
                      help="sample format: 16/24-bit integer or 32-bit float (default)")
  parser.add_argument("--accompaniment", action="store_true",
                      help="also write the sum of the non-vocal stems")
  parser.add_argument("--shifts", type=int, default=None,
                      help="random-shift passes to average (default: the config's)")
  parser.add_argument("--force", action="store_true", help="overwrite existing stems")
  parser.add_argument("--quiet", action="store_true", help="no progress bars")
  args = parser.parse_args(argv)

  from attnsep_jax.export import ModelLoadError, load_model
  try:
    config, model, params = load_model(args.checkpoint)
  except ModelLoadError as e:
    print(f"attnsep-separate: error: {e}", file=sys.stderr)
    return 1
  failures = 0
  for song in args.songs:
    try:
      targets = separate_file(song, args.out, model, params, config, fmt=args.format,
                              bits=args.bits, accompaniment=args.accompaniment,
                              force=args.force, shifts=args.shifts,
                              progress=not args.quiet)
    except (SongError, OSError, RuntimeError) as e:
      failures += 1
      print(f"{song}: error: {e}", file=sys.stderr)
      continue
    if not args.quiet:
      print(f"{song}: {os.path.dirname(next(iter(targets.values())))}")
  if failures:
    print(f"{failures} of {len(args.songs)} songs failed", file=sys.stderr)
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
