"""Chunked inference: equals whole-signal separation, any length, flat streaming."""

import jax
import numpy as np
import pytest

from attnsep_jax.config import apply_overrides
from attnsep_jax.inference import (_jitted_apply, array_reader, iter_separate, separate,
                                   triangular_window)
from attnsep_jax.models.network import build_model, init_params


@pytest.fixture(scope="module")
def local_model(tiny_config):
  """The tiny U-Net without its global parts (input normalisation, channel
  attention's time average, the inter-chunk separator), so that its output at
  a sample depends only on a neighbourhood and chunking can be checked exactly."""
  config = apply_overrides(tiny_config, [
      "model.normalize_input=False", "model.channel_attention=False",
      "model.separator='none'"])
  model = build_model(config.model)
  return model, init_params(model, jax.random.key(3))


def test_chunked_equals_whole_away_from_segment_edges(local_model):
  model, params = local_model
  rate, segment, hop = 1000, 1600, 1200   # hop is a multiple of the total stride (16)
  mixture = np.random.default_rng(0).normal(size=(5000, 2)).astype(np.float32)
  whole = np.asarray(model.apply({"params": params}, mixture[None]))[0]
  chunked = separate(model, params, mixture, sample_rate=rate, segment_seconds=segment / rate,
                     overlap=1 - hop / segment, batch_size=2)
  assert chunked.shape == whole.shape == (4, 5000, 2)
  # Strictly inside one segment, beyond the receptive field from its edges,
  # every overlapping segment computes what the whole-signal pass computes.
  margin = 128
  # Segment starts and ends, and the track end (where the whole-signal pass
  # pads differently from the last segment).
  edges = sorted({e for s in range(0, 5000, hop) for e in (s, s + segment)} - {0} | {5000})
  keep = np.ones(5000, bool)
  for edge in edges:
    keep[max(0, edge - margin):edge + margin] = False
  assert keep.sum() > 1500
  scale = np.abs(whole).max()
  np.testing.assert_allclose(chunked[:, keep], whole[:, keep], rtol=0, atol=1e-4 * scale)
  # ...while near the edges they differ (the test would notice a mis-placed chunk).
  assert np.abs(chunked - whole).max() > 1e-3 * scale


@pytest.mark.parametrize("length", [1, 999, 1601, 4097])
def test_output_length_equals_input_length(tiny_model_and_params, length):
  model, params = tiny_model_and_params
  mixture = np.random.default_rng(length).normal(size=(length, 2)).astype(np.float32) * 0.1
  out = separate(model, params, mixture, sample_rate=1000, segment_seconds=0.8,
                 overlap=0.25, batch_size=2)
  assert out.shape == (4, length, 2)
  assert np.all(np.isfinite(out))


def test_streaming_blocks_match_separate_and_stay_small(tiny_model_and_params):
  model, params = tiny_model_and_params
  mixture = np.random.default_rng(1).normal(size=(7001, 2)).astype(np.float32) * 0.1
  kwargs = dict(sample_rate=1000, segment_seconds=0.8, overlap=0.25, batch_size=2)
  blocks = list(iter_separate(model, params, array_reader(mixture), 7001, 2, **kwargs))
  # Each finished stretch is at most a batch of hops long: memory does not
  # grow with the track.
  assert max(b.shape[1] for b in blocks) <= 2 * 600 + 800
  assert len(blocks) > 3
  np.testing.assert_array_equal(np.concatenate(blocks, axis=1),
                                separate(model, params, mixture, **kwargs))


def test_shifts_average_passes_and_keep_length(tiny_model_and_params):
  model, params = tiny_model_and_params
  mixture = np.random.default_rng(2).normal(size=(3001, 2)).astype(np.float32) * 0.1
  kwargs = dict(sample_rate=1000, segment_seconds=0.8, overlap=0.25, batch_size=2)
  plain = separate(model, params, mixture, **kwargs)
  shifted = separate(model, params, mixture, shifts=2, seed=0, **kwargs)
  assert shifted.shape == plain.shape
  assert not np.allclose(shifted, plain)
  # A shift of 0 samples reproduces the plain pass exactly.
  same = separate(model, params, mixture, shifts=1, seed=5, **kwargs)
  offset = int(np.random.default_rng(5).integers(0, 800 // 2 + 1))
  if offset == 0:
    np.testing.assert_allclose(same, plain)
  # Relative to the input scale the averaged output stays close to a pass.
  assert np.abs(shifted - plain).mean() < np.abs(plain).mean()


def test_one_compilation_for_many_lengths(tiny_model_and_params):
  model, params = tiny_model_and_params
  apply = _jitted_apply(model, 0.0, 256, 0)
  kwargs = dict(sample_rate=1000, segment_seconds=0.8, overlap=0.25, batch_size=2,
                soft_mask_power=0.0, soft_mask_fft_size=256)
  separate(model, params, np.zeros((900, 2), np.float32), **kwargs)
  before = apply._cache_size()
  for length in (1234, 5000, 3333):
    separate(model, params, np.zeros((length, 2), np.float32), **kwargs)
  assert apply._cache_size() == before


def test_bad_arguments(tiny_model_and_params):
  model, params = tiny_model_and_params
  with pytest.raises(ValueError, match="time, channels"):
    separate(model, params, np.zeros((10,)))
  with pytest.raises(ValueError, match="empty"):
    separate(model, params, np.zeros((0, 2)))
  with pytest.raises(ValueError, match="overlap"):
    separate(model, params, np.zeros((10, 2)), overlap=1.0)


def test_triangular_window_is_positive_and_symmetric():
  for length in (1, 2, 7, 8):
    w = triangular_window(length)
    assert w.shape == (length,) and np.all(w > 0) and np.allclose(w, w[::-1])


def test_soft_mask_post_filter_makes_stems_sum_to_the_mixture(tiny_model_and_params):
  model, params = tiny_model_and_params
  mixture = np.random.default_rng(4).normal(size=(3001, 2)).astype(np.float32) * 0.1
  kwargs = dict(sample_rate=1000, segment_seconds=0.8, overlap=0.25, batch_size=2)
  plain = separate(model, params, mixture, **kwargs)
  masked = separate(model, params, mixture, soft_mask_power=1.0, soft_mask_fft_size=256,
                    **kwargs)
  assert masked.shape == plain.shape
  # Each segment's masked stems sum to its mixture, and so do their cross-fades.
  np.testing.assert_allclose(masked.sum(axis=0), mixture, atol=1e-4)
  assert not np.allclose(masked, plain, atol=1e-3)
  # The masks follow the network's stems: louder stems keep more energy.
  assert np.corrcoef(np.abs(plain).mean(axis=(1, 2)), np.abs(masked).mean(axis=(1, 2)))[0, 1] > 0.5
  refined = separate(model, params, mixture, soft_mask_power=1.0, soft_mask_fft_size=256,
                     wiener_iterations=1, **kwargs)
  np.testing.assert_allclose(refined.sum(axis=0), mixture, atol=1e-4)
  assert not np.allclose(refined, masked, atol=1e-4)
  with pytest.raises(ValueError, match="soft_mask_power"):
    separate(model, params, mixture, wiener_iterations=1, **kwargs)
