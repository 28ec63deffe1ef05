"""ChunkLoader: shapes, sums, determinism, resume, multi-process split, sharding."""

import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from attnsep_jax.data.loader import ChunkLoader, validation_tracks
from attnsep_jax.train.distributed import shard_batch
from attnsep_jax.data.musdb import DataError, TrackIndex


def _loader(root, **kwargs):
  args = dict(root=root, segment_seconds=0.25, batch_size=4, seed=1, shift_seconds=0.1,
              prefetch_batches=2, num_workers=2)
  args.update(kwargs)
  return ChunkLoader(**args)


def _take(loader, n):
  return [next(loader) for _ in range(n)]


def test_shapes_dtypes_and_mixture_is_sum(synth_corpus):
  with _loader(synth_corpus) as loader:
    batch = next(iter(loader))
  assert batch["mixture"].shape == (4, 11025, 2) and batch["mixture"].dtype == np.float32
  assert batch["sources"].shape == (4, 4, 11025, 2) and batch["sources"].dtype == np.float32
  np.testing.assert_array_equal(batch["mixture"], batch["sources"].sum(axis=1))
  assert np.abs(batch["sources"]).max() > 0


def test_deterministic_and_seed_dependent(synth_corpus):
  a = _take(_loader(synth_corpus), 3)
  b = _take(_loader(synth_corpus, num_workers=0), 3)   # prefetch changes nothing
  c = _take(_loader(synth_corpus, seed=2), 1)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["sources"], y["sources"])
  assert not np.array_equal(a[0]["sources"], c[0]["sources"])
  assert not np.array_equal(a[0]["sources"], a[1]["sources"])


def test_resume_gives_the_batches_of_an_uninterrupted_run(synth_corpus):
  uninterrupted = _take(_loader(synth_corpus), 5)
  first = _loader(synth_corpus)
  _take(first, 2)
  state = json.loads(json.dumps(first.state_dict()))   # survives a JSON checkpoint
  assert state["next_batch"] == 2
  first.close()
  resumed = _loader(synth_corpus)
  resumed.load_state_dict(state)
  for expected, got in zip(uninterrupted[2:], _take(resumed, 3)):
    np.testing.assert_array_equal(expected["sources"], got["sources"])
    np.testing.assert_array_equal(expected["mixture"], got["mixture"])
  assert resumed.state_dict()["next_batch"] == 5
  with pytest.raises(ValueError, match="seed"):
    _loader(synth_corpus, seed=9).load_state_dict(state)


def test_processes_split_the_global_batch(synth_corpus):
  whole = _loader(synth_corpus, num_workers=0).batch(3)
  parts = [_loader(synth_corpus, num_workers=0, process_index=p, process_count=2).batch(3)
           for p in range(2)]
  assert parts[0]["sources"].shape[0] == 2
  np.testing.assert_array_equal(
      np.concatenate([p["sources"] for p in parts]), whole["sources"])
  with pytest.raises(ValueError, match="multiple of process_count"):
    _loader(synth_corpus, batch_size=3, process_count=2, process_index=0)


def test_augmentations_off_reads_aligned_chunks(synth_corpus):
  loader = _loader(synth_corpus, remix_probability=0.0, gain_range=None, channel_swap=False,
                   polarity_flip=False, shift_seconds=0.0, num_workers=0)
  sources = loader.batch(0)["sources"][0]
  # Unaugmented: the chunk appears verbatim, at one offset, in one track's mixture.
  index = TrackIndex(synth_corpus)
  found = False
  for track in loader.tracks:
    mixture, _ = index.read_track(track)
    target = sources.sum(axis=0)
    starts = np.flatnonzero(np.all(mixture == target[0], axis=1))
    found |= any(np.array_equal(mixture[s:s + target.shape[0]], target) for s in starts)
  assert found


def test_remix_mixes_tracks(synth_corpus):
  remixed = _loader(synth_corpus, gain_range=None, channel_swap=False, polarity_flip=False,
                    shift_seconds=0.0, num_workers=0).batch(0)["sources"]
  aligned = _loader(synth_corpus, remix_probability=0.0, gain_range=None, channel_swap=False,
                    polarity_flip=False, shift_seconds=0.0, num_workers=0).batch(0)["sources"]
  assert remixed.shape == aligned.shape
  assert not np.array_equal(remixed, aligned)


def test_silence_skipping(corpus_copy):
  # Silence the vocals of every training track but one: with a threshold,
  # vocals chunks come from that one track (remix redraws a silent source).
  index = TrackIndex(corpus_copy)
  train = index.tracks("train", "train")
  for track in train[1:]:
    audio, rate = sf.read(track.file("vocals"), dtype="int16")
    sf.write(track.file("vocals"), np.zeros_like(audio), rate, subtype="PCM_16")
    mixture = sum(sf.read(track.file(s), dtype="int32")[0] for s in ("drums", "bass", "other"))
    sf.write(track.file("mixture"), mixture.astype(np.int16), rate, subtype="PCM_16")
  kwargs = dict(segment_seconds=0.5, batch_size=8, shift_seconds=0.0, gain_range=None,
                num_workers=0)
  plain = _loader(corpus_copy, **kwargs).batch(0)["sources"][:, 3]
  skipped = _loader(corpus_copy, silence_threshold_db=-60.0, **kwargs).batch(0)["sources"][:, 3]
  level = lambda x: 10 * np.log10(np.mean(x ** 2, axis=(1, 2)) + 1e-20)
  assert np.sum(level(plain) < -60) > np.sum(level(skipped) < -60)


def test_short_tracks_are_padded_with_a_warning(synth_corpus):
  with pytest.warns(UserWarning, match="zero-padded"):
    loader = _loader(synth_corpus, segment_seconds=5.0, batch_size=1, num_workers=0,
                     remix_probability=0.0, shift_seconds=0.0)
  sources = loader.batch(0)["sources"]
  assert sources.shape == (1, 4, 5 * 44100, 2)
  assert np.all(sources[:, :, int(3.5 * 44100):] == 0)


def test_sample_rate_mismatch_and_empty_split(synth_corpus, tmp_path):
  with pytest.raises(DataError, match="sample rate"):
    _loader(synth_corpus, sample_rate=48000)
  root = tmp_path / "only_test"
  shutil.copytree(os.path.join(synth_corpus, "test"), root / "test")
  with pytest.raises(DataError, match="no training tracks"):
    _loader(str(root))


def test_worker_errors_reach_the_caller(corpus_copy):
  loader = _loader(corpus_copy, batch_size=2)
  for track in loader.tracks:
    for stem in ("drums", "bass", "other", "vocals"):
      with open(track.file(stem), "r+b") as f:
        f.truncate(100)
  with pytest.raises(DataError, match="wav"):
    next(loader)
  loader.close()


def test_batches_shard_over_devices():
  batch = {"mixture": np.arange(8 * 3 * 2).reshape(8, 3, 2),
           "sources": np.zeros((8, 4, 3, 2))}
  out = shard_batch(batch, 2)
  assert out["mixture"].shape == (2, 4, 3, 2) and out["sources"].shape == (2, 4, 4, 3, 2)
  np.testing.assert_array_equal(out["mixture"][1, 0], batch["mixture"][4])
  with pytest.raises(ValueError, match="not divisible by the 3 local devices"):
    shard_batch(batch, 3)


def test_validation_tracks_are_whole_and_sorted(synth_corpus):
  valid = list(validation_tracks(synth_corpus))
  assert len(valid) == 1
  test = list(validation_tracks(synth_corpus, split="test"))
  assert [n for n, _, _ in test] == sorted(n for n, _, _ in test) and len(test) == 2
  for name, mixture, sources in valid + test:
    assert mixture.shape == (int(3.5 * 44100), 2) and sources.shape == (4,) + mixture.shape
    np.testing.assert_array_equal(mixture, sources.sum(axis=0))
  again = list(validation_tracks(synth_corpus, split="test", max_seconds=1.0))
  np.testing.assert_array_equal(again[0][1], test[0][1][:44100])
  resampled = next(validation_tracks(synth_corpus, sample_rate=22050))
  assert abs(resampled[1].shape[0] - int(3.5 * 22050)) <= 1


def test_random_eq_reshapes_the_sources_and_the_mixture_stays_their_sum(synth_corpus):
  settings = dict(remix_probability=0.0, gain_range=None, channel_swap=False,
                  polarity_flip=False, shift_seconds=0.0, num_workers=0)
  plain = _loader(synth_corpus, **settings).batch(0)
  equalised = _loader(synth_corpus, eq_probability=1.0, **settings).batch(0)
  np.testing.assert_array_equal(equalised["mixture"], equalised["sources"].sum(axis=1))
  # Same chunks (EQ draws come after the read), other spectra.
  assert not np.allclose(equalised["sources"], plain["sources"], atol=1e-3)
  correlation = np.corrcoef(equalised["mixture"].ravel(), plain["mixture"].ravel())[0, 1]
  assert correlation > 0.5
