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


def _sine(freq_hz, samples=44100, sample_rate=44100):
  t = np.arange(samples) / sample_rate
  return np.sin(2 * np.pi * freq_hz * t).astype(np.float32)


def test_random_eq_scales_each_frequency_by_its_source_own_smooth_gain():
  # Each source: a 100 Hz and a 4 kHz sine on both channels (whole cycles, so
  # the FFT sees pure tones).  The EQ must keep each tone's frequency and the
  # stereo image, and scale it by at most max_db, differently per source.
  low, high = _sine(100.0), _sine(4000.0)
  stems = np.stack([np.stack([low + high, low + high], axis=-1)] * 4)      # (4, T, 2)
  out = augment.random_eq(stems, np.random.default_rng(5), probability=1.0, max_db=6.0)
  assert out.shape == stems.shape and out.dtype == np.float32
  np.testing.assert_array_equal(out[..., 0], out[..., 1])
  gains = []
  for source in out[..., 0]:
    spectrum = np.abs(np.fft.rfft(source)) / (len(source) / 2)   # 1 Hz bins: tone amplitudes
    assert spectrum[[100, 4000]].min() > 0.5 and np.delete(spectrum, [100, 4000]).max() < 1e-3
    gains.append(20 * np.log10(spectrum[[100, 4000]]))
  gains = np.array(gains)                                          # (4 sources, 2 tones) dB
  assert np.all(np.abs(gains) <= 6.0 + 1e-3)
  assert np.ptp(gains[:, 0]) > 0.5 and np.ptp(gains[:, 1]) > 0.5   # each source its own curve
  assert np.any(np.abs(gains[:, 0] - gains[:, 1]) > 0.5)           # not a plain gain


def test_random_eq_off_flat_or_unchosen_changes_nothing(stems):
  rng = np.random.default_rng(6)
  assert augment.random_eq(stems, rng, probability=0.0, max_db=6.0) is stems
  np.testing.assert_allclose(augment.random_eq(stems, rng, probability=1.0, max_db=0.0), stems,
                             atol=1e-5)
  # Half the sources on average: the unchosen come back bit for bit.
  out = augment.random_eq(stems, np.random.default_rng(7), probability=0.5, max_db=6.0)
  kept = [np.array_equal(o, s) for o, s in zip(out, stems)]
  assert 0 < sum(kept) < 4
