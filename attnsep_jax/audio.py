"""Audio file I/O: read, write (atomically), resample, fix channel counts.

Everything returns and takes ``(time, channels)`` float32 arrays.  Reading
goes through soundfile (libsndfile: wav, flac, ogg, mp3, ...); formats that
libsndfile cannot open (m4a/aac, .stem.mp4) fall back to ffmpeg when it is on
PATH.  Writing goes to a temporary file in the same folder that is then
renamed over the target, so a crash never leaves a half-written file under the
final name, and an existing file is only replaced with ``overwrite=True``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
import warnings

import numpy as np
import soundfile as sf


class AudioError(ValueError):
  """An audio file that cannot be read or written; the message names it."""


# libsndfile's header log says "data : 176400 (should be 88178)" when the data
# chunk promises more bytes than the file holds; it then reads what is there.
_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Sizes a writer that cannot seek back (a pipe) leaves in the header: not truncation.
_STREAMED_SIZES = {0, 0x7FFFFFFF, 0xFFFFFFFF}


def info(path: str) -> sf._SoundFileInfo:
  """soundfile's header information (frames, samplerate, channels, subtype).

  Raises AudioError for a file libsndfile cannot open and for a truncated
  file (its header promises more audio than it holds), which libsndfile
  would otherwise read short without a word.
  """
  try:
    header = sf.info(path, verbose=True)
  except Exception as e:  # libsndfile raises a bare RuntimeError/LibsndfileError
    raise AudioError(f"{path}: cannot read audio header ({_reason(e, path)})") from None
  short = _SHORT_DATA.search(header.extra_info or "")
  if short:
    promised, present = int(short.group(1)), int(short.group(2))
    if promised > present and promised not in _STREAMED_SIZES:
      promised_s = header.duration * promised / max(present, 1)
      raise AudioError(
          f"{path}: truncated: its header promises {promised_s:.2f} s of audio but the "
          f"file holds {header.duration:.2f} s (an interrupted copy or download?); "
          "re-encode it (ffmpeg -i IN OUT.wav) to use what is there")
  return header


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
    AudioError: the file is missing or unreadable.
  """
  if not os.path.isfile(path):
    raise AudioError(f"{path}: no such file")
  try:
    audio, rate = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
  except Exception as e:
    if not shutil.which("ffmpeg"):
      raise AudioError(f"{path}: cannot read audio ({_reason(e, path)})") from None
    audio, rate = _read_with_ffmpeg(path)
    audio = audio[start:] if frames < 0 else audio[start:start + frames]
  if channels is not None:
    audio = to_channels(audio, channels)
  if sample_rate is not None and sample_rate != rate:
    audio, rate = resample(audio, rate, sample_rate), sample_rate
  return np.ascontiguousarray(audio, dtype=np.float32), int(rate)


def _read_with_ffmpeg(path: str) -> tuple[np.ndarray, int]:
  """Decodes the first audio stream of anything ffmpeg knows, as float32."""
  probe = subprocess.run(
      ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
       "stream=sample_rate,channels", "-of", "csv=p=0", path],
      capture_output=True, text=True)
  fields = probe.stdout.strip().split(",")
  if probe.returncode or len(fields) != 2:
    raise AudioError(f"{path}: not an audio file that soundfile or ffmpeg can read")
  rate, channels = int(fields[0]), int(fields[1])
  decode = subprocess.run(
      ["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-map", "0:a:0", "-f", "f32le",
       "-acodec", "pcm_f32le", "-"], capture_output=True)
  if decode.returncode:
    raise AudioError(f"{path}: ffmpeg failed: {decode.stderr.decode(errors='replace').strip()}")
  audio = np.frombuffer(decode.stdout, np.float32).reshape(-1, channels)  # interleaved
  return audio, rate


def write_audio(path: str, audio: np.ndarray, sample_rate: int, subtype: str | None = None,
                overwrite: bool = False) -> None:
  """Writes ``(time, channels)`` audio atomically.

  Args:
    path: the target; its extension selects the format (.wav, .flac, ...).
    audio: samples, ``(time, channels)`` or ``(time,)``: floats nominally in
      [-1, 1], or integers (int16 for PCM_16) written without conversion.
    sample_rate: in Hz.
    subtype: soundfile subtype such as "PCM_16", "PCM_24", "FLOAT" (None: the
      format's default, PCM_16 for wav and flac).
    overwrite: replace an existing file (otherwise an existing file is an error).
  Raises:
    AudioError: the file exists (without ``overwrite``), or the format,
      subtype or folder is unusable.
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
  # A unique hidden name beside the target (same filesystem, so the rename is
  # atomic); created by libsndfile with the usual umask permissions.
  tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
  try:
    sf.write(tmp, audio, int(sample_rate), subtype=subtype, format=fmt)
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(e, Exception) and not isinstance(e, AudioError):
      raise AudioError(f"{path}: cannot write ({_reason(e)})") from e
    raise


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
