"""Losses and the fast SDR against hand-computed values."""

import numpy as np
import pytest

from attnsep_jax.losses import per_source_loss, relative_mse, separation_loss
from attnsep_jax.metrics import utterance_sdr


def test_relative_mse_hand_values():
  x = np.array([1.0, 0.0, -2.0, 0.5])
  x_hat = np.array([1.0, 1.0, 2.0, 0.25])
  # (0/2)^2, (1/1)^2, (4/4)^2, (0.25/0.75)^2 with eps = 0
  expected = [0.0, 1.0, 1.0, 1.0 / 9.0]
  np.testing.assert_allclose(relative_mse(x, x_hat, 0.0), expected, rtol=1e-6)
  # eps softens near-silence: |0 - 1e-3| / (1e-3 + 1e-3) = 0.5 -> 0.25
  np.testing.assert_allclose(relative_mse(np.zeros(1), np.full(1, 1e-3), 1e-3), [0.25],
                             rtol=1e-6)


def _stems(values_per_source):
  # (batch=1, sources, time=2, channels=1)
  return np.asarray(values_per_source, np.float32).reshape(1, -1, 2, 1)


def test_l1_mse_per_source_and_weights():
  target = _stems([[1, 1], [0, 0], [2, 2], [1, -1]])
  estimate = _stems([[0, 1], [0, 2], [2, 2], [-1, -1]])
  l1 = per_source_loss(target, estimate, "l1")
  np.testing.assert_allclose(l1, [0.5, 1.0, 0.0, 1.0])
  mse = per_source_loss(target, estimate, "mse")
  np.testing.assert_allclose(mse, [0.5, 2.0, 0.0, 2.0])
  total, _ = separation_loss(target, estimate, "mse", source_weights=(1, 0, 0, 1))
  np.testing.assert_allclose(total, (0.5 + 2.0) / 2)
  total, _ = separation_loss(target, estimate, "l1")
  np.testing.assert_allclose(total, 2.5 / 4)


def test_relative_mse_per_source():
  target = _stems([[1, 1], [0, 0], [2, 2], [1, -1]])
  estimate = _stems([[0, 1], [0, 2], [2, 2], [-1, -1]])
  per_source = per_source_loss(target, estimate, "relative_mse", eps=0.0 + 1e-12)
  # source 0: (1/1)^2, 0 -> 0.5; source 1: 0/0 -> 0, (2/2)^2 -> 0.5
  # source 2: 0; source 3: (2/2)^2, 0 -> 0.5
  np.testing.assert_allclose(per_source, [0.5, 0.5, 0.0, 0.5], atol=1e-6)


def test_loss_errors():
  with pytest.raises(ValueError, match="unknown loss"):
    separation_loss(np.zeros((1, 4, 2, 2)), np.zeros((1, 4, 2, 2)), "huber")
  with pytest.raises(ValueError, match="differ"):
    separation_loss(np.zeros((1, 4, 2, 2)), np.zeros((1, 4, 3, 2)))
  with pytest.raises(ValueError, match="source_weights"):
    separation_loss(np.zeros((1, 4, 2, 2)), np.zeros((1, 4, 2, 2)), source_weights=(1, 1))


def test_utterance_sdr_hand_values():
  target = np.ones((1, 2, 4, 2), np.float32)            # energy 8 per source
  estimate = target.copy()
  estimate[0, 0] *= 0.9                                  # error energy 8 * 0.01
  estimate[0, 1] = 0.0                                   # error energy 8
  sdr = np.asarray(utterance_sdr(target, estimate, delta=0.0))
  np.testing.assert_allclose(sdr[0], [20.0, 0.0], atol=1e-4)
  # Silence estimated as silence is perfect up to delta: 10 log10(delta/delta) = 0.
  np.testing.assert_allclose(utterance_sdr(np.zeros((2, 2)), np.zeros((2, 2))), 0.0)


def test_stft_term_is_zero_on_a_perfect_estimate_and_stays_in_its_source():
  rng = np.random.default_rng(0)
  target = rng.normal(size=(2, 4, 3000, 2)).astype(np.float32)
  estimate = target.copy()
  estimate[:, 2] += 0.1 * rng.normal(size=(2, 3000, 2)).astype(np.float32)
  plain = per_source_loss(target, estimate, "l1")
  with_stft = per_source_loss(target, estimate, "l1", stft_weight=2.0,
                              stft_fft_sizes=(512, 128))
  extra = np.asarray(with_stft) - np.asarray(plain)
  np.testing.assert_allclose(extra[[0, 1, 3]], 0.0, atol=1e-7)
  assert extra[2] > 0.01
  np.testing.assert_allclose(per_source_loss(target, target, "l1", stft_weight=1.0), 0.0,
                             atol=1e-7)


def test_stft_term_of_a_white_error_is_sqrt_3_16_of_the_l1_per_window_size():
  # Each spectrum is divided by sqrt(window): a white error's real and
  # imaginary parts then have std sqrt(3/16) sigma (Hann: sum w^2 = 3N/8).
  error = np.random.default_rng(1).normal(size=(1, 4, 88200, 2)).astype(np.float32)
  zeros = np.zeros_like(error)
  l1 = float(np.mean(per_source_loss(zeros, error, "l1")))
  for fft_size in (4096, 256):
    total = float(np.mean(per_source_loss(zeros, error, "l1", stft_weight=1.0,
                                          stft_fft_sizes=(fft_size,))))
    # Frames at the ends are half padding: a few per cent below the ratio.
    assert 0.93 * np.sqrt(3 / 16) < (total - l1) / l1 < 1.01 * np.sqrt(3 / 16), fft_size


def test_sdr_loss_is_the_negative_sdr_of_each_frame():
  target = np.ones((1, 4, 8, 2), np.float32)
  estimate = target.copy()
  estimate[0, 0, :4] *= 0.9                              # frame 0 of stem 0: 20 dB
  estimate[0, 1, 4:] = 0.0                               # frame 1 of stem 1: 0 dB
  per_source = per_source_loss(target, estimate, "sdr", sdr_frame_samples=4, sdr_floor=0.0)
  # Frames of 4 samples: each stem's loss is the mean of its two frames' -SDR;
  # a perfect frame sits at the 1e-8 floor, -10 log10(8 / 1e-8) = -89 dB.
  perfect = -10 * np.log10(8 / 1e-8)
  np.testing.assert_allclose(per_source, [(-20 + perfect) / 2, (0 + perfect) / 2, perfect, perfect],
                             rtol=1e-3)


def test_sdr_loss_weighs_every_frame_alike_whatever_its_level():
  rng = np.random.default_rng(1)
  target = rng.normal(size=(2, 4, 64, 2)).astype(np.float32)
  estimate = target + 0.3 * rng.normal(size=target.shape).astype(np.float32)
  louder = np.concatenate([target[:, :, :32], 100 * target[:, :, 32:]], axis=2)
  louder_estimate = np.concatenate([estimate[:, :, :32], 100 * estimate[:, :, 32:]], axis=2)
  for kind, same in (("sdr", True), ("l1", False)):
    before = per_source_loss(target, estimate, kind, sdr_frame_samples=32)
    after = per_source_loss(louder, louder_estimate, kind, sdr_frame_samples=32)
    assert np.allclose(before, after, rtol=1e-4) == same, kind


def test_sdr_loss_floor_bounds_a_silent_stem():
  target = np.zeros((1, 4, 8, 1), np.float32)
  target[0, 0] = 1.0                                     # mixture energy 8
  estimate = target.copy()
  estimate[0, 1] = 1.0                                   # leakage into a silent stem
  per_source = per_source_loss(target, estimate, "sdr", sdr_frame_samples=8, sdr_floor=1e-3)
  floor = 1e-3 * 8 + 1e-8
  # 10 log10((8 + f) / f): about 30 dB, not the 89 dB of a floor-less ratio.
  np.testing.assert_allclose(per_source[1], 10 * np.log10((8 + floor) / floor), rtol=1e-4)
