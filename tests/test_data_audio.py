"""attnsep_jax.audio: read/write round trips, atomic refusal, resampling, errors."""

import os

import numpy as np
import pytest

from attnsep_jax.audio import AudioError, read_audio, resample, to_channels, write_audio


def test_round_trip_float_and_pcm16(tmp_path):
  audio = (0.5 * np.random.default_rng(0).uniform(-1, 1, (1000, 2))).astype(np.float32)
  path = str(tmp_path / "a.wav")
  write_audio(path, audio, 44100, subtype="FLOAT")
  back, rate = read_audio(path)
  assert rate == 44100 and back.dtype == np.float32
  np.testing.assert_array_equal(back, audio)
  write_audio(str(tmp_path / "b.flac"), audio, 44100)
  back, _ = read_audio(str(tmp_path / "b.flac"))
  np.testing.assert_allclose(back, audio, atol=1 / 32767)


def test_refuses_to_overwrite_and_leaves_no_temp_files(tmp_path):
  path = str(tmp_path / "a.wav")
  write_audio(path, np.zeros((10, 2)), 44100)
  with pytest.raises(AudioError, match="exists"):
    write_audio(path, np.ones((10, 2)) * 0.5, 44100)
  write_audio(path, np.ones((10, 2)) * 0.5, 44100, overwrite=True)
  assert read_audio(path)[0][0, 0] == pytest.approx(0.5, abs=1e-4)
  assert os.listdir(tmp_path) == ["a.wav"]


def test_bad_inputs(tmp_path):
  with pytest.raises(AudioError, match="no such file"):
    read_audio(str(tmp_path / "missing.wav"))
  bad = tmp_path / "bad.wav"
  bad.write_bytes(b"garbage" * 20)
  with pytest.raises(AudioError, match="bad.wav"):
    read_audio(str(bad))
  with pytest.raises(AudioError, match="NaN"):
    write_audio(str(tmp_path / "n.wav"), np.full((4, 2), np.nan), 44100)
  with pytest.raises(AudioError, match="format"):
    write_audio(str(tmp_path / "x.xyz"), np.zeros((4, 2)), 44100)
  with pytest.warns(UserWarning, match="clipped"):
    write_audio(str(tmp_path / "loud.wav"), np.full((4, 2), 2.0), 44100)


def test_resample_and_channels(tmp_path):
  t = np.arange(48000) / 48000
  tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)[:, None]
  path = str(tmp_path / "m.wav")
  write_audio(path, tone, 48000, subtype="FLOAT")
  audio, rate = read_audio(path, sample_rate=44100, channels=2)
  assert rate == 44100 and audio.shape == (44100, 2)
  spectrum = np.abs(np.fft.rfft(audio[:, 0]))
  assert abs(np.argmax(spectrum) - 440) <= 1
  np.testing.assert_array_equal(to_channels(audio, 1)[:, 0], audio.mean(axis=1))
  assert resample(audio, 44100, 44100) is not None
