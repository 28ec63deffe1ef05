"""Audio files: the one home of reading, checking and writing them.

Everything returns and takes ``(time, channels)`` float32 arrays.  Reading
goes through libsndfile (soundfile: wav, flac, ogg, mp3, aiff, ...) and, for
what libsndfile cannot open (m4a/aac, the mixture of a .stem.mp4, wma, ...),
through ffmpeg when it is on PATH, piped as float32 PCM so that memory stays
flat however long the file.  ``read_blocks`` streams a file block by block,
resampled with soxr and converted to the channels wanted, and can check the
samples on the way (NaN/Inf, empty, silent); ``read_audio`` reads a whole
file.  Every problem is an ``AudioError`` with one line that names the file.
Writing goes through ``attnsep_jax.files`` (a hidden temporary renamed when
complete), so a crash or a full disk never leaves a half-written file.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from typing import Iterator

import numpy as np
import soundfile as sf

from attnsep_jax import files

BLOCK_FRAMES = 1 << 18   # frames per decoded block: about 6 s at 44.1 kHz
# What libsndfile decodes, then what only ffmpeg does (the first audio stream
# of the container: the mixture of a .stem.mp4).
SOUNDFILE_EXTENSIONS = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif",
                        ".aiff", ".aifc", ".w64", ".rf64", ".caf", ".au"}
FFMPEG_EXTENSIONS = {".m4a", ".mp4", ".aac", ".alac", ".wma", ".webm", ".mka", ".ac3"}
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | FFMPEG_EXTENSIONS
# libsndfile formats whose reads can seek to any frame cheaply.
SEEKABLE_FORMATS = {"WAV", "WAVEX", "FLAC", "AIFF", "W64", "RF64", "CAF"}


class AudioError(ValueError):
  """An audio file that cannot be read or written; the message names it."""


@dataclasses.dataclass(frozen=True)
class AudioInfo:
  """What a file's header says, under soundfile's names.

  Attributes:
    path: the file.
    samplerate: in Hz.
    channels: channel count.
    frames: length in samples; from ffmpeg, the container's duration times
      the rate (an estimate: the decoded length may differ by a frame).
    format: libsndfile's format ("WAV", "FLAC", ...) or ffmpeg's codec ("aac").
    subtype: libsndfile's sample format ("PCM_16", "FLOAT", ...); "" from ffmpeg.
    decoder: "soundfile" or "ffmpeg".
  """
  path: str
  samplerate: int
  channels: int
  frames: int
  format: str
  subtype: str
  decoder: str

  @property
  def duration(self) -> float:
    """Length in seconds."""
    return self.frames / self.samplerate if self.samplerate else 0.0

  @property
  def seekable(self) -> bool:
    """Whether any frame can be read directly, without decoding the file again."""
    return self.decoder == "soundfile" and self.format in SEEKABLE_FORMATS


# libsndfile's header log says "data : 176400 (should be 88178)" when the data
# chunk promises more bytes than the file holds; it then reads what is there.
_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Sizes a writer that cannot seek back (a pipe) leaves in the header: not truncation.
_STREAMED_SIZES = {0, 0x7FFFFFFF, 0xFFFFFFFF}


def info(path: str) -> AudioInfo:
  """The header of an audio file that libsndfile or ffmpeg reads.

  Raises:
    AudioError: no such file, a folder, a file neither decoder reads, or a
      truncated file (its header promises more audio than it holds, which
      libsndfile would otherwise read short without a word).
  """
  if not os.path.exists(path):
    raise AudioError(f"{path}: no such file")
  if os.path.isdir(path):
    raise AudioError(f"{path}: is a folder, not an audio file")
  try:
    header = sf.info(path, verbose=True)
  except Exception as e:  # libsndfile raises a bare RuntimeError/LibsndfileError
    return _ffmpeg_info(path, _reason(e, path))
  short = _SHORT_DATA.search(header.extra_info or "")
  if short:
    promised, present = int(short.group(1)), int(short.group(2))
    if promised > present and promised not in _STREAMED_SIZES:
      promised_s = header.duration * promised / max(present, 1)
      raise AudioError(
          f"{path}: truncated: its header promises {promised_s:.2f} s of audio but the "
          f"file holds {header.duration:.2f} s (an interrupted copy or download?); "
          "re-encode it (ffmpeg -i IN OUT.wav) to use what is there")
  return AudioInfo(path, int(header.samplerate), int(header.channels), int(header.frames),
                   header.format, header.subtype, "soundfile")


def _reason(error: Exception, path: str | None = None) -> str:
  text = str(error).strip()
  # libsndfile repeats the path in its message; keep only the reason.
  reason = text.split(": ", 1)[-1] if text else type(error).__name__
  # libsndfile says this of any existing file whose format it does not
  # recognise (e.g. random bytes named .mp3), which sends users looking for
  # a missing file.
  if path and os.path.isfile(path) and "does not exist" in reason:
    reason = "not in an audio format libsndfile recognises, or corrupt"
  return reason


def has_ffmpeg() -> bool:
  return bool(shutil.which("ffmpeg") and shutil.which("ffprobe"))


def _ffmpeg_info(path: str, soundfile_reason: str) -> AudioInfo:
  """The first audio stream's header, from ffprobe, for what libsndfile cannot open."""
  if not has_ffmpeg():
    raise AudioError(f"{path}: cannot read audio ({soundfile_reason}; ffmpeg, which reads "
                     "m4a, aac and more, is not installed)")
  probe = subprocess.run(
      ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
       "stream=sample_rate,channels,codec_name,duration:format=duration", "-of", "json", path],
      capture_output=True, text=True, stdin=subprocess.DEVNULL)
  found = json.loads(probe.stdout or "{}") if probe.returncode == 0 else {}
  streams = found.get("streams") or [{}]
  stream = streams[0]
  if not stream.get("sample_rate") or not stream.get("channels"):
    why = _ffmpeg_message(probe.stderr, path) or "no audio stream"
    raise AudioError(f"{path}: cannot read audio (libsndfile: {soundfile_reason}; "
                     f"ffmpeg: {why})")
  rate = int(stream["sample_rate"])
  duration = stream.get("duration") or found.get("format", {}).get("duration") or 0.0
  try:
    frames = int(round(float(duration) * rate))
  except ValueError:   # "N/A": the container does not say
    frames = 0
  return AudioInfo(path, rate, int(stream["channels"]), frames,
                   stream.get("codec_name", "unknown"), "", "ffmpeg")


def _ffmpeg_message(stderr: str, path: str) -> str:
  """ffmpeg's last error line, without its "[aac @ 0x...]" and path prefixes."""
  lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
  if not lines:
    return ""
  line = re.sub(r"^\[[^\]]*\]\s*", "", lines[-1])
  return line.removeprefix(f"{path}: ")[:200]


def read_blocks(path: str, sample_rate: int | None = None, channels: int | None = None, *,
                header: AudioInfo | None = None, check: bool = False,
                block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
  """Streams a whole file as float32 ``(n, channels)`` blocks.

  Args:
    path: the file.
    sample_rate: resample to this rate in Hz with soxr, streaming (None: the file's).
    channels: convert to this many channels, 1 or 2 (None: the file's).
    header: ``info(path)``, when the caller has it already.
    check: raise AudioError for NaN/Inf samples, an empty or a silent file.
    block_frames: decoded frames per block (the rate changes it on output).
  Raises:
    AudioError: unreadable, corrupt or truncated audio; with ``check``, bad samples.
  """
  header = header or info(path)
  if header.decoder == "soundfile":
    blocks = _soundfile_blocks(path, block_frames)
  else:
    blocks = _ffmpeg_blocks(path, header.channels, block_frames)
  if check:
    blocks = _checked(path, blocks)
  have = header.channels
  wanted = channels or have
  resampler = None
  if sample_rate and sample_rate != header.samplerate:
    import soxr   # only needed when rates differ
    resampler = soxr.ResampleStream(header.samplerate, sample_rate, min(have, wanted),
                                    dtype="float32", quality="HQ")
  for block in blocks:
    # Resample the fewer channels: mono is duplicated after, stereo averaged before.
    block = to_channels(block, wanted) if wanted < have else block
    if resampler is not None:
      block = resampler.resample_chunk(block)
    yield to_channels(block, wanted)
  if resampler is not None:
    tail = resampler.resample_chunk(np.zeros((0, min(have, wanted)), np.float32), last=True)
    yield to_channels(tail, wanted)


def _soundfile_blocks(path: str, block_frames: int) -> Iterator[np.ndarray]:
  try:
    yield from sf.blocks(path, blocksize=block_frames, dtype="float32", always_2d=True)
  except (RuntimeError, sf.SoundFileError) as e:
    raise AudioError(f"{path}: is corrupt or truncated ({_reason(e)})") from None


def _ffmpeg_blocks(path: str, channels: int, block_frames: int) -> Iterator[np.ndarray]:
  """The first audio stream decoded by ffmpeg, read from its pipe block by block."""
  frame_bytes = 4 * channels
  # -xerror: stop at the first corrupt packet instead of skipping it.
  command = ["ffmpeg", "-nostdin", "-v", "error", "-xerror", "-i", path, "-map", "0:a:0",
             "-f", "f32le", "-c:a", "pcm_f32le", "-"]
  with tempfile.TemporaryFile() as errors:   # a file: a full stderr pipe would block ffmpeg
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=errors)
    try:
      while data := process.stdout.read(block_frames * frame_bytes):
        usable = len(data) - len(data) % frame_bytes
        yield np.frombuffer(data[:usable], np.float32).reshape(-1, channels)
      if process.wait() != 0:
        errors.seek(0)
        why = _ffmpeg_message(errors.read().decode(errors="replace"), path) or "no message"
        raise AudioError(f"{path}: is corrupt or truncated (ffmpeg: {why})")
    finally:
      if process.poll() is None:   # the consumer stopped early
        process.kill()
        process.wait()
      process.stdout.close()


def _checked(path: str, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
  """The blocks, raising AudioError at NaN/Inf, and at the end when empty or silent."""
  frames, peak = 0, 0.0
  for block in blocks:
    if not np.all(np.isfinite(block)):
      raise AudioError(f"{path}: contains NaN or infinite samples")
    frames += len(block)
    peak = max(peak, float(np.abs(block).max(initial=0.0)))
    yield block
  if frames == 0:
    raise AudioError(f"{path}: is empty (no samples)")
  if peak == 0.0:
    raise AudioError(f"{path}: is silent (every sample is zero)")


def read_audio(path: str, sample_rate: int | None = None, channels: int | None = None,
               start: int = 0, frames: int = -1) -> tuple[np.ndarray, int]:
  """Reads an audio file as float32 ``(time, channels)``.

  Args:
    path: the file.
    sample_rate: resample to this rate in Hz (None: keep the file's rate).
    channels: convert to this many channels (1 or 2; None: keep the file's).
    start: first frame to read, in samples at the file's rate.
    frames: number of frames to read (-1: to the end of the file).
  Returns:
    ``(audio, rate)``: the samples and their rate in Hz.
  Raises:
    AudioError: the file is missing, unreadable or corrupt.
  """
  header = info(path)
  if header.decoder == "soundfile":
    try:
      audio, _ = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as e:
      raise AudioError(f"{path}: is corrupt or truncated ({_reason(e)})") from None
  else:
    audio = np.concatenate(list(read_blocks(path, header=header)))
    audio = audio[start:] if frames < 0 else audio[start:start + frames]
  rate = header.samplerate
  if channels is not None:
    audio = to_channels(audio, channels)
  if sample_rate is not None and sample_rate != rate:
    audio, rate = resample(audio, rate, sample_rate), sample_rate
  return np.ascontiguousarray(audio, dtype=np.float32), int(rate)


def os_error(error: BaseException) -> OSError:
  """An OSError for a failed libsndfile write (it raises RuntimeError), so that
  ``files`` removes the partial file and reports it, a full disk as such."""
  if isinstance(error, OSError):
    return error
  code = errno.ENOSPC if files.is_disk_full(error) else errno.EIO
  return OSError(code, _reason(error))


def pcm_bytes(frames: int, channels: int, subtype: str) -> int:
  """The size of a wav file of ``frames`` x ``channels`` samples of
  ``subtype``, header included (an upper bound for compressed formats)."""
  digits = "".join(c for c in subtype if c.isdigit())
  sample_bytes = {"FLOAT": 4, "DOUBLE": 8}.get(subtype, int(digits) // 8 if digits else 2)
  return 44 + frames * channels * max(1, sample_bytes)


def write_audio(path: str, audio: np.ndarray, sample_rate: int, subtype: str | None = None,
                overwrite: bool = False) -> None:
  """Writes ``(time, channels)`` audio atomically (``files.staged_file``).

  Args:
    path: the target; its extension selects the format (.wav, .flac, ...).
    audio: samples, ``(time, channels)`` or ``(time,)``: floats nominally in
      [-1, 1], or integers (int16 for PCM_16) written without conversion.
    sample_rate: in Hz.
    subtype: soundfile subtype such as "PCM_16", "PCM_24", "FLOAT" (None: the
      format's default, PCM_16 for wav and flac).
    overwrite: replace an existing file (otherwise an existing file is an error).
  Raises:
    AudioError: the file exists (without ``overwrite``), or the audio, format,
      subtype or folder is unusable.
    files.WriteError: the write failed (a full disk...); nothing is left behind.
  """
  if os.path.exists(path) and not overwrite:
    raise AudioError(f"{path}: exists; refusing to overwrite it (pass overwrite=True)")
  audio = np.asarray(audio)
  if audio.ndim == 1:
    audio = audio[:, None]
  if audio.ndim != 2:
    raise AudioError(f"{path}: audio must be (time, channels), got shape {audio.shape}")
  is_int = audio.dtype.kind in "iu"   # integer PCM is written as is, losslessly
  if not is_int and not np.all(np.isfinite(audio)):
    raise AudioError(f"{path}: audio contains NaN or Inf")
  fmt = os.path.splitext(path)[1].lstrip(".").upper()
  if fmt not in sf.available_formats():
    raise AudioError(f"{path}: unknown audio format {fmt!r}")
  subtype = subtype or sf.default_subtype(fmt)
  if not sf.check_format(fmt, subtype):
    raise AudioError(f"{path}: subtype {subtype} is not valid for {fmt}")
  peak = float(np.max(np.abs(audio))) if audio.size and not is_int else 0.0
  if not subtype.startswith(("FLOAT", "DOUBLE")) and peak > 1.0:
    # libsndfile would clip silently; say so once.
    warnings.warn(f"{path}: peak {peak:.3f} > 1 is clipped by {subtype}", stacklevel=2)
    audio = np.clip(audio, -1.0, 1.0)
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise AudioError(f"{path}: folder {folder} does not exist")
  with files.staged_file(path, f"the audio file {os.path.basename(path)}",
                         needed_bytes=pcm_bytes(*audio.shape, subtype)) as tmp:
    try:
      sf.write(tmp, audio, int(sample_rate), subtype=subtype, format=fmt)
    except Exception as e:
      raise os_error(e) from e


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
  """Band-limited resampling of ``(time, channels)`` audio with soxr (HQ)."""
  if from_rate == to_rate:
    return np.asarray(audio, np.float32)
  import soxr  # only needed when rates differ
  return np.asarray(soxr.resample(np.asarray(audio, np.float32), from_rate, to_rate,
                                  quality="HQ"), np.float32)


def to_channels(audio: np.ndarray, channels: int) -> np.ndarray:
  """Mono -> stereo by duplication, stereo -> mono by averaging."""
  have = audio.shape[1]
  if have == channels:
    return audio
  if have == 1:
    return np.repeat(audio, channels, axis=1)
  if channels == 1:
    return audio.mean(axis=1, keepdims=True)
  raise AudioError(f"cannot convert {have} channels to {channels}")
