"""Soft masks: ratio masks over the mixture's STFT (oracle and post-filter)."""

import jax.numpy as jnp
import jax.scipy.signal
import numpy as np
import pytest

from attnsep_jax import masking
from attnsep_jax.masking import soft_mask

RATE = 8000


def _tone(freq_hz: float, amplitude: float, seconds: float = 1.0) -> np.ndarray:
  t = np.arange(int(RATE * seconds)) / RATE
  return (amplitude * np.sin(2 * np.pi * freq_hz * t))[:, None].repeat(2, axis=1)


def test_stems_sum_to_the_mixture_whatever_the_estimates():
  rng = np.random.default_rng(0)
  mixture = rng.normal(size=(2, 5001, 2)).astype(np.float32)       # length not a hop multiple
  stems = rng.normal(size=(2, 4, 5001, 2)).astype(np.float32) * [[[[1.0]], [[0.1]], [[3.0]], [[0.0]]]]
  masked = np.asarray(soft_mask(mixture, stems, power=1.0, fft_size=512))
  assert masked.shape == stems.shape and masked.dtype == np.float32
  np.testing.assert_allclose(masked.sum(axis=1), mixture, atol=1e-4)
  assert np.abs(masked[:, 3]).max() < 1e-3                          # a silent estimate gets ~nothing


def test_a_lone_stem_takes_the_whole_mixture_and_silence_is_shared():
  mixture = np.random.default_rng(1).normal(size=(3000, 2)).astype(np.float32)
  stems = np.zeros((4, 3000, 2), np.float32)
  stems[2] = np.random.default_rng(2).normal(size=(3000, 2))
  masked = np.asarray(soft_mask(mixture, stems, fft_size=256))
  np.testing.assert_allclose(masked[2], mixture, atol=1e-4)
  shared = np.asarray(soft_mask(mixture, np.zeros_like(stems), fft_size=256))
  np.testing.assert_allclose(shared, np.broadcast_to(mixture / 4, shared.shape), atol=1e-4)


def test_power_sets_how_a_shared_bin_is_split():
  # Two estimates of one tone at amplitudes 1 and 0.5: the first gets
  # 1 / 1.5 of the mixture with magnitude ratios, 1 / 1.25 with power ratios.
  mixture = _tone(440.0, 0.6)
  stems = np.stack([_tone(440.0, 1.0), _tone(440.0, 0.5)])
  middle = slice(2000, -2000)
  for power, share in ((1.0, 1 / 1.5), (2.0, 1 / 1.25)):
    masked = np.asarray(soft_mask(mixture, stems, power=power, fft_size=1024))
    np.testing.assert_allclose(masked[0, middle], share * mixture[middle], atol=2e-3)


def test_disjoint_estimates_keep_their_own_bins():
  mixture = _tone(300.0, 0.5) + _tone(2000.0, 0.3)
  # Estimates with the right spectra but wrong levels and some cross-talk.
  stems = np.stack([_tone(300.0, 0.2) + _tone(2000.0, 0.01), _tone(2000.0, 0.9)])
  masked = np.asarray(soft_mask(mixture, stems, fft_size=1024))
  middle = slice(2000, -2000)
  np.testing.assert_allclose(masked[0, middle], _tone(300.0, 0.5)[middle], atol=0.03)
  np.testing.assert_allclose(masked[1, middle], _tone(2000.0, 0.3)[middle], atol=0.03)


def test_a_signal_shorter_than_one_window_is_masked_too():
  rng = np.random.default_rng(3)
  mixture = rng.normal(size=(700, 2)).astype(np.float32)
  stems = np.zeros((4, 700, 2), np.float32)
  stems[1] = mixture
  masked = np.asarray(soft_mask(mixture, stems, fft_size=4096))
  assert masked.shape == stems.shape
  np.testing.assert_allclose(masked[1], mixture, atol=1e-4)
  np.testing.assert_allclose(masked.sum(axis=0), mixture, atol=1e-4)


@pytest.mark.parametrize("length,fft_size", [(5000, 1024), (4096, 1024), (1500, 512)])
def test_stft_has_scipys_frames_and_inverts(length, fft_size):
  signal = np.random.default_rng(4).normal(size=(2, length)).astype(np.float32)
  spec = masking.stft(signal, fft_size)
  _, _, reference = jax.scipy.signal.stft(signal, nperseg=fft_size,
                                          noverlap=fft_size - fft_size // 4)
  # scipy scales by 1 / sum(window) and may add trailing frames of padding only.
  reference = np.swapaxes(np.asarray(reference), -1, -2)[..., :spec.shape[-2], :]
  np.testing.assert_allclose(np.asarray(spec) / (fft_size / 2), reference, atol=1e-5)
  np.testing.assert_allclose(masking.istft(spec, fft_size, length), signal, atol=1e-5)


def test_a_window_that_is_not_a_multiple_of_the_hop_is_refused():
  with pytest.raises(ValueError, match="multiple of 4"):
    masking.soft_mask(np.zeros((100, 2)), np.zeros((4, 100, 2)), 1.0, 1026)


def _panned_noises(seconds: float = 1.0):
  """Two noises with one spectrum, panned to opposite sides: (2, time, 2)."""
  rng = np.random.default_rng(4)
  left, right = 0.1 * rng.standard_normal((2, int(RATE * seconds))).astype(np.float32)
  return np.stack([left[:, None] * [1.0, 0.2], right[:, None] * [0.2, 1.0]]).astype(np.float32)


def _sdr_db(reference, estimate) -> float:
  return float(10 * np.log10(np.sum(reference ** 2) / np.sum((reference - estimate) ** 2)))


def test_the_wiener_filter_separates_by_position_where_the_masks_cannot():
  # Each estimate leaks 60% of the other source. Per bin and channel the
  # magnitudes are ambiguous, but the sources sit at opposite sides of the
  # stereo image: the spatial covariances tell them apart, and each
  # iteration sharpens them.
  stems = _panned_noises()
  mixture = stems.sum(axis=0)
  estimates = stems + 0.6 * stems[::-1]
  sdr = {}
  for iterations in (0, 1, 3):
    out = np.asarray(soft_mask(mixture, estimates, 1.0, 512, wiener_iterations=iterations))
    sdr[iterations] = min(_sdr_db(stems[j], out[j]) for j in range(2))
    np.testing.assert_allclose(out.sum(axis=0), mixture, atol=1e-4)
  assert sdr[0] < 7 and sdr[1] > sdr[0] + 3 and sdr[3] > sdr[1] + 3, sdr


def test_the_wiener_filter_keeps_a_lone_source_and_the_batch_rows_apart():
  # Row 0: one active estimate takes the whole mixture. Row 1 is 1000x
  # louder than the same input filtered alone: the filter's scaling is per
  # row and its result scales with the input, so neither row moves the other.
  stems = _panned_noises(0.5)
  leaky = stems + 0.6 * stems[::-1]
  mixture = np.stack([stems[0], 1000 * stems.sum(axis=0)])
  estimates = np.zeros((2, 4) + stems.shape[1:], np.float32)
  estimates[0, 2] = stems[0]
  estimates[1, :2] = 1000 * leaky
  out = np.asarray(soft_mask(mixture, estimates, 1.0, 256, wiener_iterations=2))
  alone = np.asarray(soft_mask(stems.sum(axis=0), leaky, 1.0, 256, wiener_iterations=2))
  # A lone source makes the mixture's covariance rank one: float32 and the
  # regulariser leave errors of about 1e-4 of the signal's peak.
  np.testing.assert_allclose(out[0, 2], mixture[0], atol=1e-3)
  np.testing.assert_allclose(out[0, [0, 1, 3]], 0.0, atol=1e-3)
  np.testing.assert_allclose(out[1, :2] / 1000, alone, atol=1e-4)


@pytest.mark.parametrize("channels", [2, 3])
def test_the_wiener_filters_solver_matches_numpy(channels):
  rng = np.random.default_rng(5)
  shape = (7, 5, channels)
  a = rng.normal(size=shape + (channels,)) + 1j * rng.normal(size=shape + (channels,))
  b = rng.normal(size=shape) + 1j * rng.normal(size=shape)
  solved = masking._solve(jnp.asarray(a, jnp.complex64), jnp.asarray(b, jnp.complex64))
  np.testing.assert_allclose(solved, np.linalg.solve(a, b[..., None])[..., 0], rtol=1e-3, atol=1e-4)
