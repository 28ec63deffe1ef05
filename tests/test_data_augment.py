"""Augmentation invariants: shapes, sums, ranges, exact permutations and signs."""

import numpy as np
import pytest

from attnsep_jax.data import augment


@pytest.fixture
def stems():
  return np.random.default_rng(0).normal(size=(4, 300, 2)).astype(np.float32)


def test_gain_in_range_per_source(stems):
  out = augment.random_gain(stems, np.random.default_rng(1), (0.25, 1.25))
  gains = out[:, 0, 0] / stems[:, 0, 0]
  assert np.all((gains >= 0.25) & (gains <= 1.25))
  np.testing.assert_allclose(out, stems * gains[:, None, None], rtol=1e-6)
  assert len(set(np.round(gains, 6))) == 4


def test_channel_swap_is_an_exact_permutation(stems):
  rng = np.random.default_rng(2)
  out = augment.channel_swap(stems, rng)
  swapped = [not np.array_equal(o, s) for o, s in zip(out, stems)]
  for o, s, sw in zip(out, stems, swapped):
    np.testing.assert_array_equal(o, s[:, ::-1] if sw else s)
  out_all = augment.channel_swap(stems, rng, probability=1.0)
  np.testing.assert_array_equal(out_all, stems[..., ::-1])


def test_polarity_flip_is_an_exact_sign_flip(stems):
  out = augment.polarity_flip(stems, np.random.default_rng(3))
  for o, s in zip(out, stems):
    assert np.array_equal(o, s) or np.array_equal(o, -s)
  np.testing.assert_array_equal(
      augment.polarity_flip(stems, np.random.default_rng(3), probability=1.0), -stems)


def test_time_shift_crops_each_source_at_its_own_offset(stems):
  out = augment.time_shift(stems, np.random.default_rng(4), 200)
  assert out.shape == (4, 200, 2)
  offsets = []
  for o, s in zip(out, stems):
    matches = [k for k in range(101) if np.array_equal(s[k:k + 200], o)]
    assert matches
    offsets.append(matches[0])
  assert len(set(offsets)) > 1
  with pytest.raises(ValueError):
    augment.time_shift(stems, np.random.default_rng(4), 400)


def test_remix_draws_sources_from_different_tracks():
  rng = np.random.default_rng(5)
  weights = np.ones(10)
  draws = [augment.remix_tracks(rng, 4, weights, 1.0) for _ in range(50)]
  assert all(remixed for _, remixed in draws)
  assert any(len(set(t.tolist())) > 1 for t, _ in draws)
  plain = [augment.remix_tracks(rng, 4, weights, 0.0) for _ in range(50)]
  assert all(len(set(t.tolist())) == 1 and not remixed for t, remixed in plain)
  # Weights matter: a zero-weight track is never drawn.
  weights[3] = 0
  assert all(3 not in augment.remix_tracks(rng, 4, weights, 1.0)[0] for _ in range(50))


def test_augment_keeps_shape_dtype_and_mix_is_sum(stems):
  out = augment.augment_sources(stems, np.random.default_rng(6))
  assert out.shape == stems.shape and out.dtype == np.float32
  np.testing.assert_array_equal(augment.mix(out), out.sum(axis=0))
  same = augment.augment_sources(stems, np.random.default_rng(6))
  np.testing.assert_array_equal(out, same)
  off = augment.augment_sources(stems, np.random.default_rng(6), None, False, False)
  np.testing.assert_array_equal(off, stems)


def test_rms_db():
  sine = np.sin(np.linspace(0, 200 * np.pi, 10000))[None, :, None].repeat(2, -1)
  assert abs(augment.rms_db(sine)[0] + 3.01) < 0.05
  assert augment.rms_db(np.zeros((1, 10, 2)))[0] < -150


def test_fused_augment_equals_the_functions_in_turn(stems):
  fused = augment.augment_sources(stems, np.random.default_rng(7))
  rng = np.random.default_rng(7)
  step = augment.random_gain(stems, rng)
  step = augment.channel_swap(step, rng)
  step = augment.polarity_flip(step, rng)
  np.testing.assert_allclose(fused, step, rtol=1e-6)
  assert not np.array_equal(fused, stems)
