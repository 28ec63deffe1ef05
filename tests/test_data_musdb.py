"""Track index: listing, splits, musdb equivalence and every bad-input case."""

import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import yaml

from attnsep_jax import SOURCES
from attnsep_jax.data.musdb import DataError, TrackIndex


def _first_track(root):
  train = os.path.join(root, "train")
  return os.path.join(train, sorted(os.listdir(train))[0])


def test_lists_subsets_and_splits(synth_corpus):
  index = TrackIndex(synth_corpus)
  train, test = index.tracks("train"), index.tracks("test")
  assert len(train) == 3 and len(test) == 2
  assert [t.name for t in train] == sorted(t.name for t in train)
  valid = index.tracks("train", "valid")
  assert [t.name for t in valid] == [train[-1].name]
  assert [t.name for t in index.tracks("train", "train")] == [t.name for t in train[:-1]]
  assert index.sample_rate == 44100 and train[0].num_samples == int(3.5 * 44100)
  with pytest.raises(ValueError):
    index.tracks("test", "valid")


def test_same_tracks_splits_and_samples_as_musdb(synth_corpus):
  musdb = pytest.importorskip("musdb")
  index = TrackIndex(synth_corpus)
  for subsets, split, ours in (("train", "train", index.tracks("train", "train")),
                               ("train", "valid", index.tracks("train", "valid")),
                               ("test", None, index.tracks("test"))):
    db = musdb.DB(root=synth_corpus, is_wav=True, subsets=subsets, split=split,
                  setup_file="mus.yaml")
    assert [t.name for t in db] == [t.name for t in ours]
  db = musdb.DB(root=synth_corpus, is_wav=True, subsets="test")
  mus_track, track = db[1], index.tracks("test")[1]
  mus_track.chunk_start, mus_track.chunk_duration = 1.0, 0.5
  ours = index.read(track, 44100, 22050, stems=("mixture",) + SOURCES)
  np.testing.assert_array_equal(mus_track.stems.astype(np.float32), ours)


def test_custom_names_with_custom_validation_list(corpus_copy):
  train = os.path.join(corpus_copy, "train")
  first = sorted(os.listdir(train))[0]
  os.rename(os.path.join(train, first), os.path.join(train, "My Band - My Song"))
  with open(os.path.join(corpus_copy, "mus.yaml")) as f:
    setup = yaml.safe_load(f)
  setup["validation_tracks"] = ["My Band - My Song"]
  with open(os.path.join(corpus_copy, "mus.yaml"), "w") as f:
    yaml.safe_dump(setup, f)
  index = TrackIndex(corpus_copy)
  assert [t.name for t in index.tracks("train", "valid")] == ["My Band - My Song"]
  assert len(index.tracks("train", "train")) == 2


def test_reads_past_the_end_are_zero_padded(synth_corpus):
  index = TrackIndex(synth_corpus)
  track = index.tracks("test")[0]
  chunk = index.read(track, track.num_samples - 100, 1000)
  assert chunk.shape == (4, 1000, 2)
  assert np.all(chunk[:, 100:] == 0)


def test_empty_or_missing_root(tmp_path):
  with pytest.raises(DataError, match="no tracks found"):
    TrackIndex(str(tmp_path))
  with pytest.raises(DataError, match="does not exist"):
    TrackIndex(str(tmp_path / "nowhere"))


def test_wrong_layout_flag_is_explained(synth_corpus):
  with pytest.raises(DataError, match="is_wav=True"):
    TrackIndex(synth_corpus, is_wav=False)


def test_missing_stem(corpus_copy):
  track = _first_track(corpus_copy)
  os.remove(os.path.join(track, "bass.wav"))
  with pytest.raises(DataError, match=r"bass\.wav.*missing stem"):
    TrackIndex(corpus_copy)


def test_stems_of_different_lengths(corpus_copy):
  track = _first_track(corpus_copy)
  audio, rate = sf.read(os.path.join(track, "other.wav"), dtype="int16")
  sf.write(os.path.join(track, "other.wav"), audio[:-10], rate, subtype="PCM_16")
  with pytest.raises(DataError, match="different lengths") as error:
    TrackIndex(corpus_copy)
  assert os.path.basename(track) in str(error.value)


def test_stems_of_different_sample_rates(corpus_copy):
  track = _first_track(corpus_copy)
  audio, _ = sf.read(os.path.join(track, "drums.wav"), dtype="int16")
  sf.write(os.path.join(track, "drums.wav"), audio, 48000, subtype="PCM_16")
  with pytest.raises(DataError, match="different sample rates"):
    TrackIndex(corpus_copy)


def test_tracks_of_different_sample_rates(corpus_copy):
  track = _first_track(corpus_copy)
  for name in os.listdir(track):
    audio, _ = sf.read(os.path.join(track, name), dtype="int16")
    sf.write(os.path.join(track, name), audio, 48000, subtype="PCM_16")
  with pytest.raises(DataError, match="tracks have different sample rates"):
    TrackIndex(corpus_copy)


def test_mono_file(corpus_copy):
  track = _first_track(corpus_copy)
  audio, rate = sf.read(os.path.join(track, "vocals.wav"), dtype="int16")
  sf.write(os.path.join(track, "vocals.wav"), audio[:, 0], rate, subtype="PCM_16")
  with pytest.raises(DataError, match=r"vocals\.wav: has 1 channel"):
    TrackIndex(corpus_copy)


def test_corrupt_file(corpus_copy):
  track = _first_track(corpus_copy)
  with open(os.path.join(track, "mixture.wav"), "wb") as f:
    f.write(b"this is not a wav file" * 10)
  with pytest.raises(DataError, match=r"mixture\.wav: unreadable or corrupt"):
    TrackIndex(corpus_copy)


def test_hidden_partial_folders_are_not_tracks(corpus_copy):
  shutil.copytree(_first_track(corpus_copy), os.path.join(corpus_copy, "train", ".partial"))
  assert len(TrackIndex(corpus_copy).tracks("train")) == 3


def test_stem_mp4_layout(tmp_path):
  """MUSDB18 layout (is_wav=False) through stempeg, on the sample that stempeg ships."""
  stempeg = pytest.importorskip("stempeg")
  musdb = pytest.importorskip("musdb")
  sample = os.path.join(os.path.dirname(stempeg.__file__), "data",
                        "The Easton Ellises - Falcon 69.stem.mp4")
  if not os.path.isfile(sample):
    pytest.skip("stempeg's sample file is not installed")
  os.makedirs(tmp_path / "test")
  shutil.copy(sample, tmp_path / "test")
  index = TrackIndex(str(tmp_path), is_wav=False)
  track = index.tracks("test")[0]
  assert track.name == "The Easton Ellises - Falcon 69" and track.sample_rate == 44100
  chunk = index.read(track, 44100, 4410, stems=("mixture",) + SOURCES)
  db = musdb.DB(root=str(tmp_path), subsets="test")
  db[0].chunk_start, db[0].chunk_duration = 1.0, 0.1
  reference = db[0].stems.astype(np.float32)
  assert chunk.shape == (5, 4410, 2) and np.abs(chunk).max() > 0.01
  # Both decode through ffmpeg; AAC seeking may shift a few samples, so allow
  # only a tiny mismatch of the overlapping part.
  n = min(reference.shape[1], 4410)
  assert np.mean(np.abs(chunk[:, :n] - reference[:, :n])) < 1e-3
