"""Separate songs into stems: ``attnsep separate SONG... --checkpoint DIR --out DIR``.

Songs are files, folders (searched recursively for audio files) or glob
patterns, in any format libsndfile reads (wav, flac, ogg, mp3, ...) or,
through ffmpeg, anything else with an audio stream (m4a/aac, opus, the
mixture of a .stem.mp4, ...), at any sample rate (resampled with soxr to the
model's rate and back), mono or stereo (mono comes back as mono).  Writes
``OUT/<song>/<stem>.<ext>`` by default (``--filename`` changes the layout):
the four sources, or those of ``--stems``, or a source and the rest
(``--two-stems vocals``), plus ``accompaniment`` with ``--accompaniment``;
as wav, flac or mp3 (``attnsep_jax.stems``).  The audio is streamed: input
decoded and stems written segment by segment, so memory does not grow with
the song.  Existing outputs are never replaced without ``--force``.  A bad
file gets a one-line error and the others are still processed; a full disk
stops the run.  ``--jobs N`` separates N songs at a time in worker processes
on the CPU.  A summary ends the run; the exit status is 0 only if every song
succeeded.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Iterator

import soundfile as sf

from attnsep_jax import SOURCES, audio, cli, files
from attnsep_jax.cli import inference_options
from attnsep_jax.audio import AUDIO_EXTENSIONS
from attnsep_jax.stems import (DEFAULT_FILENAME, RESUME, SUBTYPES, EncodeError, Outputs,
                               output_paths, select_stems, write_stems)

CLI_RESUME = "free some space, then run the same command with --skip-existing to go on"
Progress = Callable[[float], None]   # fraction of the song done, 0..1


class SongError(Exception):
  """A song that cannot be separated; the message is one line for the user."""


def _song_error(error: audio.AudioError, path: str) -> SongError:
  return SongError(str(error).removeprefix(f"{path}: "))


def _song_header(path: str) -> audio.AudioInfo:
  """The song's header, checked: exists, readable, not empty, mono or stereo."""
  if os.path.isdir(path):   # find_songs passes on only folders without audio
    raise SongError("is a folder with no audio files in it (searched recursively)")
  try:
    header = audio.info(path)
  except audio.AudioError as e:   # missing, unreadable or truncated
    raise _song_error(e, path) from None
  if header.frames <= 0 and header.decoder == "soundfile":   # ffmpeg's is an estimate
    raise SongError("is empty (no samples)")
  if header.channels not in (1, 2):
    raise SongError(f"has {header.channels} channels; only mono and stereo are supported")
  return header


def inspect_song(path: str) -> audio.AudioInfo:
  """Checks that ``path`` is a readable, non-empty, finite, non-silent song.

  Decodes the whole file once; returns its header (``audio.AudioInfo``, with
  soundfile's names: samplerate, channels, frames, duration, format).
  """
  header = _song_header(path)
  try:
    for _ in audio.read_blocks(path, header=header, check=True):
      pass
  except audio.AudioError as e:
    raise _song_error(e, path) from None
  return header


def _model_input(path: str, header: audio.AudioInfo, model_rate: int,
                 scratch: str) -> tuple[str, int]:
  """A seekable stereo file of the song at the model's rate, and its length;
  the samples are checked on the way (one decoding pass)."""
  try:
    if header.seekable and header.samplerate == model_rate and header.channels == 2:
      for _ in audio.read_blocks(path, header=header, check=True):
        pass
      return path, header.frames
    copy, frames = os.path.join(scratch, "input.wav"), 0
    try:
      with sf.SoundFile(copy, "w", samplerate=model_rate, channels=2, subtype="FLOAT") as out:
        for block in audio.read_blocks(path, model_rate, 2, header=header, check=True):
          out.write(block)
          frames += len(block)
    except (OSError, RuntimeError) as e:
      raise files.write_error(audio.os_error(e), f"the decoded copy of {path}", copy,
                              resume="free some space in the temporary folder") from e
    return copy, frames
  except audio.AudioError as e:
    raise _song_error(e, path) from None


class _Progress:
  """The inference's progress: a bar on stderr, a callback with the fraction done, or nothing."""

  def __init__(self, progress: bool | Progress, song: str):
    self.callback = progress if callable(progress) else None
    self.bar = None
    if progress is True:
      from tqdm import tqdm
      self.bar = tqdm(total=1, desc=song[:30], unit="seg", leave=False, file=sys.stderr)

  def __call__(self, done: int, total: int) -> None:
    if self.callback is not None:
      self.callback(done / total)
    if self.bar is not None:
      self.bar.total, self.bar.n = total, done
      self.bar.refresh()

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()


def separate_file(path: str, out_dir: str, model, params, config,
                  outputs: Outputs = Outputs(), *, force: bool = False,
                  inference: dict | None = None, progress: bool | Progress = True,
                  resume: str = RESUME) -> dict[str, str]:
  """Separates one song into ``out_dir``; returns stem name -> path.

  Args:
    path: the song.
    out_dir: the folder the stems go to (``outputs.filename`` under it).
    model, params, config: as ``export.load_model`` returns them.
    outputs: which stems, their format and layout.
    force: replace existing stems.
    inference: overrides of ``config.inference`` (segment_seconds, overlap,
      batch_size, shifts).
    progress: True: a bar on stderr; a callable: called with the fraction
      done (0..1) as the model goes (it may raise to stop, which removes the
      partial stems); False: nothing.
    resume: how to go on after a full disk, for its message.
  Raises:
    SongError: a song that cannot be separated (one-line message).
    files.WriteError: a stem could not be written (a full disk...); no stem
      of the song is left, earlier files are intact.
  """
  header = _song_header(path)
  targets = _free_targets(path, out_dir, outputs, force)
  model_rate = int(config.data.sample_rate)
  settings = {**dict(config.inference), **(inference or {})}
  song = os.path.splitext(os.path.basename(path))[0]
  report = _Progress(progress, song)
  try:
    with tempfile.TemporaryDirectory(prefix="attnsep-") as scratch:
      source, length = _model_input(path, header, model_rate, scratch)
      for target in targets.values():
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
      frames = int(round(length * header.samplerate / model_rate))
      with write_stems(targets, song=song, rate=header.samplerate, channels=header.channels,
                       frames=frames, model_rate=model_rate, outputs=outputs,
                       resume=resume) as writer:
        _stream(model, params, source, length, model_rate, settings, report, writer)
  except EncodeError as e:
    raise SongError(str(e)) from None
  finally:
    report.close()
  if writer.clipped:
    print(f"{cli.prog('separate')}: warning: {path}: {writer.clipped} samples beyond full "
          "scale were clipped (use --bits float to keep them)", file=sys.stderr)
  return targets


def _free_targets(path: str, out_dir: str, outputs: Outputs, force: bool) -> dict[str, str]:
  """The stems' paths, once it is clear they may be written."""
  if outputs.fmt == "flac" and outputs.sample_bits == "float":
    raise SongError("FLAC cannot hold float samples; use --bits 16 or 24")
  targets = output_paths(path, out_dir, outputs)
  existing = [p for p in targets.values() if os.path.exists(p)]
  if existing and not force:
    raise SongError(f"{existing[0]} exists; use --force to overwrite")
  return targets


def _stream(model, params, source: str, length: int, model_rate: int, settings: dict,
            report: _Progress, writer) -> None:
  """The model-rate copy of the song through the streaming inference, into the stems."""
  from attnsep_jax.inference import iter_separate
  with sf.SoundFile(source) as reader:
    def read(start, count):
      reader.seek(start)
      return reader.read(count, dtype="float32", always_2d=True)

    for block in iter_separate(model, params, read, length, 2, sample_rate=model_rate,
                               progress=report, **settings):
      writer.write_block(block)


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
  for root, dirs, names in os.walk(folder):
    dirs.sort()
    found += [os.path.join(root, f) for f in sorted(names)
              if os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS and not f.startswith(".")]
  return found


# ---------------------------------------------------------------------------
# A run of the command: every song, one at a time or in worker processes.
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Run:
  """What every song of a run shares (sent to the worker processes)."""
  out_dir: str
  outputs: Outputs
  inference: dict
  force: bool = False
  skip_existing: bool = False
  show_progress: bool = True


@dataclasses.dataclass(frozen=True)
class Outcome:
  """One song's result: its stems, or why it has none."""
  song: str
  targets: dict | None = None
  seconds: float = 0.0
  error: str = ""
  skipped: bool = False
  disk_full: bool = False


def separate_song(song: str, run: Run, model, params, config) -> Outcome:
  """Separates one song of a run; every expected failure becomes its Outcome."""
  if run.skip_existing:
    targets = output_paths(song, run.out_dir, run.outputs)
    if all(os.path.exists(p) for p in targets.values()):
      return Outcome(song, targets, skipped=True)
  try:
    targets = separate_file(song, run.out_dir, model, params, config, run.outputs,
                            force=run.force, inference=run.inference,
                            progress=run.show_progress, resume=CLI_RESUME)
    return Outcome(song, targets, seconds=audio.info(song).duration)
  except (SongError, OSError, RuntimeError) as e:
    return Outcome(song, error=str(e), disk_full=files.is_disk_full(e))


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog=cli.prog("separate"),
      description="Separate songs into drums, bass, other and vocals stems.")
  parser.add_argument("songs", nargs="+", metavar="SONG",
                      help="audio files, folders (searched recursively) or glob patterns")
  parser.add_argument("--checkpoint", required=True,
                      help="training workdir (attnsep train) or export (attnsep export)")
  parser.add_argument("--out", required=True, help="folder for the stems")
  stems = parser.add_argument_group("stems")
  stems.add_argument("--stems", metavar="NAMES",
                     help=f"comma-separated stems to write (default: {','.join(SOURCES)})")
  stems.add_argument("--two-stems", metavar="STEM", choices=SOURCES,
                     help="write STEM and no_STEM (the mixture minus STEM) only")
  stems.add_argument("--accompaniment", action="store_true",
                     help="also write the sum of the non-vocal stems")
  out = parser.add_argument_group("files")
  out.add_argument("--format", choices=("wav", "flac", "mp3"), default="wav")
  out.add_argument("--bits", choices=tuple(SUBTYPES), default=None,
                   help="wav/flac sample format: 16/24-bit integer or 32-bit float "
                        "(default: float for wav, 24 for flac)")
  out.add_argument("--mp3-bitrate", type=int, default=320, metavar="KBPS",
                   help="mp3 bitrate (default 320)")
  out.add_argument("--filename", default=DEFAULT_FILENAME,
                   help="stem path under --out, from {track}, {stem} and {ext} "
                        f"(default {DEFAULT_FILENAME})")
  out.add_argument("--force", action="store_true", help="overwrite existing stems")
  out.add_argument("--skip-existing", action="store_true",
                   help="skip songs whose stems all exist (to go on after an interruption)")
  model = inference_options.add_arguments(parser)
  model.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="songs separated at a time, each in a worker process on its "
                          "share of the CPU cores (default 1)")
  parser.add_argument("--quiet", action="store_true", help="no progress bars")
  return parser


def _check_args(parser, args) -> Run:
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
  for flag in ("mp3_bitrate", "jobs"):
    if getattr(args, flag) <= 0:
      parser.error(f"--{flag.replace('_', '-')} must be positive")
  if args.force and args.skip_existing:
    parser.error("--force and --skip-existing exclude each other")
  inference = inference_options.overrides(parser, args)
  outputs = Outputs(stems=names, fmt=args.format, bits=args.bits, filename=args.filename,
                    mp3_bitrate_kbps=args.mp3_bitrate)
  return Run(args.out, outputs, inference, force=args.force,
             skip_existing=args.skip_existing, show_progress=not args.quiet and args.jobs == 1)


def _outcomes(songs: list[str], run: Run, checkpoint: str, jobs: int,
              loaded: tuple | None) -> Iterator[Outcome]:
  """Every song's Outcome, in the songs' order; after a full disk, the rest
  are not attempted.  ``loaded``: (model, params, config) for ``jobs == 1``."""
  if jobs == 1:
    results = (separate_song(song, run, *loaded) for song in songs)
  else:
    from attnsep_jax.separate_jobs import parallel_outcomes
    results = parallel_outcomes(songs, run, checkpoint, jobs)
  for index, outcome in enumerate(results):
    yield outcome
    if outcome.disk_full:
      results.close()   # a generator: stops the workers too
      for song in songs[index + 1:]:
        yield Outcome(song, error="not attempted: the disk is full")
      return


def main(argv=None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  run = _check_args(parser, args)

  from attnsep_jax.export import ModelLoadError, load_model
  try:
    config, model, params = load_model(args.checkpoint)
  except ModelLoadError as e:
    return cli.fail("separate", e)
  from attnsep_jax.inference import post_filter_problem
  problem = post_filter_problem({**dict(config.inference), **run.inference})
  if problem:
    return cli.fail("separate", problem)
  # With --jobs the workers load their own; this copy only checked the checkpoint.
  loaded = (model, params, config) if args.jobs == 1 else None
  del model, params
  songs = find_songs(args.songs)
  outcomes, started = [], time.perf_counter()
  for outcome in _outcomes(songs, run, args.checkpoint, args.jobs, loaded):
    outcomes.append(outcome)
    if outcome.error:
      print(f"{cli.prog('separate')}: error: {outcome.song}: {outcome.error}", file=sys.stderr)
    elif not args.quiet:
      done = "skipped (its stems exist)" if outcome.skipped else \
          os.path.commonpath(list(outcome.targets.values()))
      print(f"{outcome.song}: {done}")
  _summary(outcomes, time.perf_counter() - started)
  return 1 if any(o.error for o in outcomes) else 0


def _summary(outcomes: list[Outcome], seconds: float) -> None:
  failures = [o for o in outcomes if o.error]
  skipped = sum(o.skipped for o in outcomes)
  audio_seconds = sum(o.seconds for o in outcomes)
  done = len(outcomes) - len(failures) - skipped
  rtf = f", real-time factor {seconds / audio_seconds:.3f}" if audio_seconds else ""
  skips = f", skipped {skipped} whose stems exist" if skipped else ""
  print(f"separated {done} of {len(outcomes)} songs{skips} ({audio_seconds:.1f} s of audio) "
        f"in {seconds:.1f} s{rtf}", file=sys.stderr)
  if failures:
    print(f"{len(failures)} of {len(outcomes)} songs failed:", file=sys.stderr)
    for outcome in failures:
      print(f"  {outcome.song}: {outcome.error}", file=sys.stderr)


if __name__ == "__main__":
  sys.exit(main())
