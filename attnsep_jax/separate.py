"""Separate songs into stems: ``attnsep-separate SONG... --checkpoint DIR --out DIR``.

Songs are files, folders (searched recursively for audio files) or glob
patterns.  Writes ``OUT/<song>/<stem>.<ext>`` by default (``--filename``
changes the layout): the four sources, or those of ``--stems``, or a source
and the rest (``--two-stems vocals``), plus ``accompaniment`` with
``--accompaniment``; as wav (float, 24 or 16 bit), flac (24 or 16 bit) or mp3
(through ffmpeg).  Reads any file libsndfile reads (wav, flac, ogg, mp3 with
libsndfile >= 1.1), at any sample rate (resampled with soxr to the model's
rate and back), mono or stereo (mono comes back as mono).  The audio is
streamed: input read and stems written segment by segment, so memory does not
grow with the song.  Stems are written to hidden temporary files and renamed
when complete; existing outputs are never replaced without ``--force``.  A bad
file gets a one-line error and the others are still processed; a summary
ends the run, and the exit status is 0 only if every song succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

from attnsep_jax import SOURCES, audio

SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}
# FLAC holds integers only; 24 bits, as Demucs writes it. mp3 is encoded
# from float.
DEFAULT_BITS = {"wav": "float", "flac": "24", "mp3": "float"}
DEFAULT_FILENAME = "{track}/{stem}.{ext}"   # Demucs' layout
# Extensions searched for in folders: what libsndfile decodes.
AUDIO_EXTENSIONS = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif",
                    ".aiff", ".aifc", ".w64", ".rf64", ".caf", ".au"}
SEEKABLE_FORMATS = {"WAV", "WAVEX", "FLAC", "AIFF", "W64", "RF64", "CAF"}
BLOCK_FRAMES = 1 << 18


class SongError(Exception):
  """A song that cannot be separated; the message is one line for the user."""


def inspect_song(path: str) -> sf._SoundFileInfo:
  """Checks that ``path`` is a readable, non-empty, finite, non-silent song."""
  if not os.path.exists(path):
    raise SongError("no such file")
  if os.path.isdir(path):   # find_songs passes on only folders without audio
    raise SongError("is a folder with no audio files in it (searched recursively)")
  try:
    info = audio.info(path)
  except audio.AudioError as e:   # unreadable or truncated; the message names the path
    raise SongError(str(e).removeprefix(f"{path}: ")) from None
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
  """Writes stems to hidden temp files beside their targets; ``commit`` renames.

  mp3 stems are written as float wav first and encoded with ffmpeg at
  ``commit``, so that a failed encode leaves no target behind either.
  """

  def __init__(self, targets: dict[str, str], rate: int, channels: int, subtype: str,
               model_rate: int, fmt: str, mp3_bitrate_kbps: int = 320):
    import soxr
    self.targets, self.channels, self.fmt = targets, channels, fmt
    self.mp3_bitrate_kbps = mp3_bitrate_kbps
    self.temps = {name: os.path.join(os.path.dirname(p), f".{os.path.basename(p)}.partial")
                  for name, p in targets.items()}
    container = "WAV" if fmt == "mp3" else fmt.upper()
    subtype = "FLOAT" if fmt == "mp3" else subtype
    self.files = {name: sf.SoundFile(t, "w", samplerate=rate, channels=channels,
                                     subtype=subtype, format=container)
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
    if self.fmt == "mp3":
      for name in self.targets:
        self._encode_mp3(name)
    for name, target in self.targets.items():
      os.replace(self.temps[name], target)

  def _encode_mp3(self, name: str) -> None:
    wav, mp3 = self.temps[name], self.temps[name] + ".mp3"
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", wav, "-codec:a", "libmp3lame",
         "-b:a", f"{self.mp3_bitrate_kbps}k", "-f", "mp3", mp3],
        capture_output=True, text=True)
    if done.returncode != 0:
      with contextlib.suppress(OSError):
        os.remove(mp3)
      reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
      raise SongError(f"ffmpeg could not encode {self.targets[name]} ({reason})")
    os.replace(mp3, wav)

  def abort(self) -> None:
    for name, f in self.files.items():
      with contextlib.suppress(Exception):
        f.close()
      for temp in (self.temps[name], self.temps[name] + ".mp3"):
        with contextlib.suppress(OSError):
          os.remove(temp)


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
  track = os.path.splitext(os.path.basename(song_path))[0]
  return {name: os.path.join(out_dir, outputs.filename.format(track=track, stem=name,
                                                              ext=outputs.fmt))
          for name in outputs.stems}


def separate_file(path: str, out_dir: str, model, params, config,
                  outputs: Outputs = Outputs(), *, force: bool = False,
                  inference: dict | None = None, progress: bool = True) -> dict[str, str]:
  """Separates one song into ``out_dir``; returns stem name -> path.

  ``inference`` overrides ``config.inference`` (segment_seconds, overlap,
  batch_size, shifts).
  """
  from attnsep_jax.inference import iter_separate

  info = inspect_song(path)
  bits = outputs.bits or DEFAULT_BITS[outputs.fmt]
  if outputs.fmt == "flac" and bits == "float":
    raise SongError("FLAC cannot hold float samples; use --bits 16 or 24")
  targets = output_paths(path, out_dir, outputs)
  existing = [p for p in targets.values() if os.path.exists(p)]
  if existing and not force:
    raise SongError(f"{existing[0]} exists; use --force to overwrite")
  for target in targets.values():
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
  model_rate = int(config.data.sample_rate)
  settings = {**dict(config.inference), **(inference or {})}

  with tempfile.TemporaryDirectory(prefix="attnsep-") as scratch:
    if info.samplerate != model_rate or info.format not in SEEKABLE_FORMATS or info.channels == 1:
      source = os.path.join(scratch, "input.wav")
      length = _stream_to_wav(path, source, info.samplerate, model_rate)
    else:
      source, length = path, info.frames
    writer = _StemWriter(targets, info.samplerate, info.channels, SUBTYPES[bits],
                         model_rate, outputs.fmt, outputs.mp3_bitrate_kbps)
    bar = None
    if progress:
      from tqdm import tqdm
      song = os.path.splitext(os.path.basename(path))[0]
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
                                   sample_rate=model_rate, progress=report, **settings):
          for name in targets:   # block: (sources, n, 2)
            writer.write(name, stem_audio(name, block))
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


def find_songs(inputs: list[str]) -> list[str]:
  """Files, folders (searched recursively for audio files) and glob patterns,
  expanded in order, each file once.  A pattern that matches nothing stays
  as given, to be reported as missing."""
  songs = []
  for item in inputs:
    if not os.path.exists(item) and any(c in item for c in "*?["):
      matches = sorted(glob.glob(item, recursive=True))
    else:
      matches = [item]
    for match in matches or [item]:
      found = _audio_files(match) if os.path.isdir(match) else [match]
      songs += found or [match]   # an empty folder is reported as such
  return list(dict.fromkeys(songs))


def _audio_files(folder: str) -> list[str]:
  found = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    found += [os.path.join(root, f) for f in sorted(files)
              if os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS and not f.startswith(".")]
  return found


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="attnsep-separate",
      description="Separate songs into drums, bass, other and vocals stems.")
  parser.add_argument("songs", nargs="+", metavar="SONG",
                      help="audio files, folders (searched recursively) or glob patterns")
  parser.add_argument("--checkpoint", required=True,
                      help="training workdir (train.py) or export (attnsep-export)")
  parser.add_argument("--out", required=True, help="folder for the stems")
  stems = parser.add_argument_group("stems")
  stems.add_argument("--stems", metavar="NAMES",
                     help=f"comma-separated stems to write (default: {','.join(SOURCES)})")
  stems.add_argument("--two-stems", metavar="STEM", choices=SOURCES,
                     help="write STEM and no_STEM (the mixture minus STEM) only")
  stems.add_argument("--accompaniment", action="store_true",
                     help="also write the sum of the non-vocal stems")
  files = parser.add_argument_group("files")
  files.add_argument("--format", choices=("wav", "flac", "mp3"), default="wav")
  files.add_argument("--bits", choices=tuple(SUBTYPES), default=None,
                     help="wav/flac sample format: 16/24-bit integer or 32-bit float "
                          "(default: float for wav, 24 for flac)")
  files.add_argument("--mp3-bitrate", type=int, default=320, metavar="KBPS",
                     help="mp3 bitrate (default 320)")
  files.add_argument("--filename", default=DEFAULT_FILENAME,
                     help="stem path under --out, from {track}, {stem} and {ext} "
                          f"(default {DEFAULT_FILENAME})")
  files.add_argument("--force", action="store_true", help="overwrite existing stems")
  model = parser.add_argument_group("inference (default: the checkpoint config's)")
  model.add_argument("--segment", type=float, metavar="SECONDS",
                     help="length of the chunks fed to the model")
  model.add_argument("--overlap", type=float, help="overlap of chunks, in [0, 1)")
  model.add_argument("--shifts", type=int, help="random-shift passes to average")
  model.add_argument("--batch-size", type=int, help="chunks per model call")
  parser.add_argument("--quiet", action="store_true", help="no progress bars")
  return parser


def _check_args(parser, args) -> tuple[Outputs, dict]:
  try:
    names = select_stems(args.stems, args.two_stems, args.accompaniment)
  except ValueError as e:
    parser.error(str(e))
  try:
    args.filename.format(track="t", stem="s", ext="e")
  except (KeyError, IndexError, ValueError) as e:
    parser.error(f"--filename may use {{track}}, {{stem}} and {{ext}} only ({e})")
  if "{stem}" not in args.filename:
    parser.error("--filename must contain {stem}, or every stem would go to one file")
  if args.format == "mp3" and not shutil.which("ffmpeg"):
    parser.error("mp3 output needs ffmpeg on PATH (apt-get install ffmpeg)")
  if args.overlap is not None and not 0 <= args.overlap < 1:
    parser.error("--overlap must be in [0, 1)")
  for flag in ("segment", "batch_size", "mp3_bitrate"):
    if getattr(args, flag) is not None and getattr(args, flag) <= 0:
      parser.error(f"--{flag.replace('_', '-')} must be positive")
  if args.shifts is not None and args.shifts < 0:
    parser.error("--shifts must be 0 or more")
  inference = {key: value for key, value in (
      ("segment_seconds", args.segment), ("overlap", args.overlap),
      ("shifts", args.shifts), ("batch_size", args.batch_size)) if value is not None}
  outputs = Outputs(stems=names, fmt=args.format, bits=args.bits, filename=args.filename,
                    mp3_bitrate_kbps=args.mp3_bitrate)
  return outputs, inference


def main(argv=None):
  parser = _parser()
  args = parser.parse_args(argv)
  outputs, inference = _check_args(parser, args)

  from attnsep_jax.export import ModelLoadError, load_model
  try:
    config, model, params = load_model(args.checkpoint)
  except ModelLoadError as e:
    print(f"attnsep-separate: error: {e}", file=sys.stderr)
    return 1
  songs = find_songs(args.songs)
  failures, audio_seconds, started = {}, 0.0, time.perf_counter()
  for song in songs:
    try:
      targets = separate_file(song, args.out, model, params, config, outputs,
                              force=args.force, inference=inference,
                              progress=not args.quiet)
    except (SongError, OSError, RuntimeError) as e:
      failures[song] = str(e)
      print(f"{song}: error: {e}", file=sys.stderr)
      continue
    audio_seconds += sf.info(song).duration
    if not args.quiet:
      print(f"{song}: {os.path.commonpath(list(targets.values()))}")
  _summary(len(songs), failures, audio_seconds, time.perf_counter() - started)
  return 1 if failures else 0


def _summary(total: int, failures: dict, audio_seconds: float, seconds: float) -> None:
  done = total - len(failures)
  rtf = f", real-time factor {seconds / audio_seconds:.3f}" if audio_seconds else ""
  print(f"separated {done} of {total} songs ({audio_seconds:.1f} s of audio) in "
        f"{seconds:.1f} s{rtf}", file=sys.stderr)
  if failures:
    print(f"{len(failures)} of {total} songs failed:", file=sys.stderr)
    for song, reason in failures.items():
      print(f"  {song}: {reason}", file=sys.stderr)


if __name__ == "__main__":
  sys.exit(main())
