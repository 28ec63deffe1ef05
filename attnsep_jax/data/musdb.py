"""Track index for MUSDB18 (.stem.mp4), MUSDB18-HQ and MUSDB-layout wav folders.

Layouts, as the ``musdb`` package reads them::

  is_wav=True  (MUSDB18-HQ):  root/{train,test}/<track>/{mixture,drums,bass,other,vocals}.wav
  is_wav=False (MUSDB18):     root/{train,test}/<track>.stem.mp4  (streams: mixture, drums,
                              bass, other, vocals)

The train/valid split follows musdb: a track of the train subset is in the
validation split when its name is in the setup file's ``validation_tracks``.
The setup file is ``root/mus.yaml`` when there is one (musdb's ``setup_file``
convention, and what the built-in corpus writes), else musdb's own list.

Wav files are read with ``soundfile.read(start=, frames=)``: the same samples
as musdb's reader for 16-bit files, about 200x faster (musdb starts ffmpeg
once per file).  Stem files decode through stempeg/ffmpeg.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import soundfile as sf

from attnsep_jax import AUDIO_CHANNELS, SOURCES

MIXTURE = "mixture"
SUBSETS = ("train", "test")
SPLITS = ("train", "valid", "train+valid")


class DataError(ValueError):
  """A corpus that cannot be used; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class Track:
  """One multitrack song of the index.

  Attributes:
    name: the track's name (folder name, or file name without .stem.mp4).
    subset: "train" or "test".
    path: the track folder (wav) or the .stem.mp4 file.
    num_samples: length in samples (all stems have it).
    sample_rate: in Hz.
    is_wav: True for a wav folder.
    is_valid: in the validation split of the train subset.
  """
  name: str
  subset: str
  path: str
  num_samples: int
  sample_rate: int
  is_wav: bool
  is_valid: bool = False

  @property
  def seconds(self) -> float:
    return self.num_samples / self.sample_rate

  def file(self, stem: str) -> str:
    """The wav file of ``stem`` ("mixture" or a source name)."""
    return os.path.join(self.path, f"{stem}.wav")


def validation_names(root: str, setup_file: str | None = None) -> list[str]:
  """The ``validation_tracks`` of ``root/setup_file``, ``root/mus.yaml`` or musdb's."""
  import yaml
  if setup_file is not None:
    path = os.path.join(root, setup_file)
    if not os.path.isfile(path):
      raise DataError(f"{path}: setup file not found")
  else:
    path = os.path.join(root, "mus.yaml")
    if not os.path.isfile(path):
      path = _musdb_setup_file()
  try:
    with open(path) as f:
      setup = yaml.safe_load(f) or {}
  except (OSError, yaml.YAMLError) as e:
    raise DataError(f"{path}: cannot read setup file ({e})") from None
  names = setup.get("validation_tracks") or []
  if not isinstance(names, list):
    raise DataError(f"{path}: validation_tracks must be a list of track names")
  return [str(n) for n in names]


def _musdb_setup_file() -> str:
  # The yaml ships inside the musdb package; importing musdb itself would
  # require ffmpeg (stempeg checks at import), so locate the file instead.
  import importlib.util
  spec = importlib.util.find_spec("musdb")
  if spec is None or not spec.submodule_search_locations:
    raise DataError("the musdb package is not installed and root has no mus.yaml")
  return os.path.join(list(spec.submodule_search_locations)[0], "configs", "mus.yaml")


class TrackIndex:
  """The tracks under a MUSDB-layout root, checked once when built.

  Args (constructor):
    root: corpus folder holding ``train/`` and/or ``test/``.
    is_wav: True for wav folders (MUSDB18-HQ layout), False for .stem.mp4.
    setup_file: musdb setup yaml inside ``root`` with ``validation_tracks``
      (None: ``root/mus.yaml`` if present, else musdb's built-in list).
  Raises:
    DataError: empty or missing root, missing stem, stems with different
      lengths or sample rates, files that are not stereo, unreadable files.
  """

  def __init__(self, root: str, is_wav: bool = True, setup_file: str | None = None):
    self.root = os.path.abspath(os.path.expanduser(root))
    self.is_wav = bool(is_wav)
    if not os.path.isdir(self.root):
      raise DataError(f"{self.root}: corpus root does not exist")
    valid = set(validation_names(self.root, setup_file))
    self._tracks: dict[str, list[Track]] = {}
    for subset in SUBSETS:
      folder = os.path.join(self.root, subset)
      names = _list_tracks(folder, self.is_wav) if os.path.isdir(folder) else []
      probe = _probe_wav_track if self.is_wav else _probe_stem_file
      self._tracks[subset] = [
          probe(name, subset, folder, is_valid=(subset == "train" and name in valid))
          for name in names]
    if not any(self._tracks.values()):
      layout = ("train|test/<track>/{mixture,drums,bass,other,vocals}.wav" if self.is_wav
                else "train|test/<track>.stem.mp4")
      hint = ""
      if not self.is_wav and _list_tracks(os.path.join(self.root, "train"), True):
        hint = " (it holds wav folders: use is_wav=True)"
      elif self.is_wav and _list_tracks(os.path.join(self.root, "train"), False):
        hint = " (it holds .stem.mp4 files: use is_wav=False)"
      raise DataError(f"{self.root}: no tracks found; expected {layout}{hint}")
    rates = {t.sample_rate for ts in self._tracks.values() for t in ts}
    if len(rates) > 1:
      first = {}
      for t in self.all_tracks():
        first.setdefault(t.sample_rate, t.path)
      raise DataError(f"{self.root}: tracks have different sample rates: "
                      + ", ".join(f"{r} Hz ({p})" for r, p in sorted(first.items())))
    self.sample_rate = rates.pop()

  def all_tracks(self) -> list[Track]:
    return [t for subset in SUBSETS for t in self._tracks[subset]]

  def tracks(self, subset: str = "train", split: str | None = None) -> list[Track]:
    """Tracks of ``subset`` sorted by name, optionally one split of "train".

    Args:
      subset: "train" or "test".
      split: for subset "train": "train" (without the validation tracks),
        "valid" (only them), "train+valid" or None (all).
    """
    if subset not in SUBSETS:
      raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    tracks = self._tracks[subset]
    if split is None or split == "train+valid":
      return list(tracks)
    if split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    if subset != "train":
      raise ValueError("split applies to the train subset only (musdb's convention)")
    return [t for t in tracks if t.is_valid == (split == "valid")]

  def read(self, track: Track, start: int = 0, frames: int | None = None,
           stems: tuple[str, ...] = SOURCES, out: np.ndarray | None = None) -> np.ndarray:
    """Reads ``stems`` of ``track`` as float32 ``(len(stems), frames, 2)``.

    Args:
      track: from this index.
      start: first sample.
      frames: number of samples (None: to the end).  Reads past the end of
        the track are zero-padded, so short tracks give full-length chunks.
      stems: names among "mixture" and the sources, in the order wanted.
      out: optional C-contiguous float32 ``(len(stems), frames, 2)`` to fill
        (saves a copy of every sample in the training loader).
    """
    if frames is None:
      frames = max(track.num_samples - start, 0)
    shape = (len(stems), frames, AUDIO_CHANNELS)
    if out is None:
      out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
      raise ValueError(f"out must be C-contiguous float32 {shape}")
    available = max(min(frames, track.num_samples - start), 0)
    out[:, available:] = 0.0
    if available == 0:
      return out
    if track.is_wav:
      for i, stem in enumerate(stems):
        _read_wav(track.file(stem), start, available, out[i, :available])
    else:
      out[:, :available] = _read_stem_file(track, start, available, stems)
    return out

  def read_track(self, track: Track) -> tuple[np.ndarray, np.ndarray]:
    """The whole track: mixture ``(time, 2)`` and sources ``(4, time, 2)``."""
    audio = self.read(track, stems=(MIXTURE,) + SOURCES)
    return audio[0], audio[1:]


# ----------------------------------------------------------------- listing
def _list_tracks(folder: str, is_wav: bool) -> list[str]:
  if not os.path.isdir(folder):
    return []
  entries = sorted(os.listdir(folder))
  if is_wav:
    # Hidden folders are half-written tracks or tool droppings, never tracks.
    return [e for e in entries
            if not e.startswith(".") and os.path.isdir(os.path.join(folder, e))]
  return [e[:-len(".stem.mp4")] for e in entries
          if e.endswith(".stem.mp4") and not e.startswith(".")]


def _probe_wav_track(name: str, subset: str, folder: str, is_valid: bool) -> Track:
  path = os.path.join(folder, name)
  lengths, rates = {}, {}
  for stem in (MIXTURE,) + SOURCES:
    file = os.path.join(path, f"{stem}.wav")
    if not os.path.isfile(file):
      raise DataError(f"{file}: missing stem {stem!r} of track {name!r}")
    try:
      header = sf.info(file)
    except Exception as e:
      raise DataError(f"{file}: unreadable or corrupt audio file ({e})") from None
    if header.channels != AUDIO_CHANNELS:
      raise DataError(f"{file}: has {header.channels} channel(s); stems must be stereo")
    if header.frames <= 0:
      raise DataError(f"{file}: contains no samples")
    lengths[stem], rates[stem] = header.frames, header.samplerate
  if len(set(rates.values())) > 1:
    raise DataError(f"{path}: stems have different sample rates: "
                    + ", ".join(f"{k}.wav {v} Hz" for k, v in rates.items()))
  if len(set(lengths.values())) > 1:
    raise DataError(f"{path}: stems have different lengths: "
                    + ", ".join(f"{k}.wav {v} samples" for k, v in lengths.items()))
  return Track(name=name, subset=subset, path=path, num_samples=lengths[MIXTURE],
               sample_rate=rates[MIXTURE], is_wav=True, is_valid=is_valid)


def _probe_stem_file(name: str, subset: str, folder: str, is_valid: bool) -> Track:
  path = os.path.join(folder, f"{name}.stem.mp4")
  import stempeg  # needs ffmpeg/ffprobe on PATH
  try:
    info = stempeg.Info(path)
  except Exception as e:
    raise DataError(f"{path}: unreadable or corrupt stem file ({e})") from None
  streams = info.nb_audio_streams
  if streams < 1 + len(SOURCES):
    raise DataError(f"{path}: has {streams} audio streams; expected "
                    f"{1 + len(SOURCES)} (mixture, {', '.join(SOURCES)})")
  channels = [info.channels(i) for i in range(streams)]
  if any(c != AUDIO_CHANNELS for c in channels):
    raise DataError(f"{path}: streams must be stereo, got channels {channels}")
  rates = {info.sample_rate(i) for i in range(streams)}
  if len(rates) > 1:
    raise DataError(f"{path}: streams have different sample rates {sorted(rates)}")
  rate = rates.pop()
  # Streams of an AAC stem file differ by a few encoder-padding samples; the
  # shortest is the track's length (musdb decodes all streams together).
  num_samples = min(info.samples(i) for i in range(streams))
  return Track(name=name, subset=subset, path=path, num_samples=int(num_samples),
               sample_rate=int(rate), is_wav=False, is_valid=is_valid)


# ----------------------------------------------------------------- reading
def _read_wav(file: str, start: int, frames: int, out: np.ndarray) -> np.ndarray:
  try:
    audio, _ = sf.read(file, start=start, frames=frames, dtype="float32", always_2d=True,
                       out=out, fill_value=None)
  except Exception as e:
    raise DataError(f"{file}: unreadable or corrupt audio file ({e})") from None
  if audio.shape[0] != frames:
    raise DataError(f"{file}: expected {frames} samples from {start}, read "
                    f"{audio.shape[0]} (truncated file?)")
  return audio


def _read_stem_file(track: Track, start: int, frames: int, stems) -> np.ndarray:
  import stempeg
  order = (MIXTURE,) + SOURCES
  try:
    audio, _ = stempeg.read_stems(
        track.path, start=start / track.sample_rate,
        duration=(frames + 1) / track.sample_rate, dtype=np.float32,
        ffmpeg_format="s16le")   # as musdb reads them
  except Exception as e:
    raise DataError(f"{track.path}: cannot decode ({e})") from None
  audio = np.asarray(audio, np.float32)                      # (streams, time, 2)
  out = np.zeros((len(stems), frames, AUDIO_CHANNELS), np.float32)
  length = min(frames, audio.shape[1])
  for i, stem in enumerate(stems):
    out[i, :length] = audio[order.index(stem), :length]
  return out
