"""attnsep_jax.audio: round trips, atomic writes, resampling, ffmpeg decoding, errors."""

import os

import numpy as np
import pytest

from attnsep_jax.audio import (AudioError, info, read_audio, read_blocks, resample, to_channels,
                               write_audio)


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


def _ffmpeg_m4a(path, seconds=1.0, rate=44100, faststart=False):
  """An AAC file made by ffmpeg (a format libsndfile cannot read)."""
  import subprocess
  command = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
             f"sine=frequency=440:duration={seconds}:sample_rate={rate}", "-ac", "2",
             "-c:a", "aac"] + (["-movflags", "+faststart"] if faststart else []) + [path]
  subprocess.run(command, check=True)
  return path


def test_m4a_streams_through_ffmpeg_with_flat_blocks(tmp_path):
  path = _ffmpeg_m4a(str(tmp_path / "tone.m4a"))
  header = info(path)
  assert (header.decoder, header.format, header.samplerate, header.channels) == \
      ("ffmpeg", "aac", 44100, 2)
  assert header.duration == pytest.approx(1.0, abs=0.05)
  whole, rate = read_audio(path)
  assert rate == 44100 and abs(len(whole) - 44100) < 2048   # AAC frames of 1024
  spectrum = np.abs(np.fft.rfft(whole[:32768, 0]))
  assert abs(np.argmax(spectrum) * 44100 / 32768 - 440) < 3
  blocks = list(read_blocks(path, block_frames=4096, check=True))
  assert max(len(b) for b in blocks) == 4096 and len(blocks) > 5
  np.testing.assert_array_equal(np.concatenate(blocks), whole)
  # Streaming resampling and channel conversion agree with the whole-file path.
  mono = np.concatenate(list(read_blocks(path, 22050, 1, block_frames=4096)))
  expected, _ = read_audio(path, sample_rate=22050, channels=1)
  assert mono.shape == expected.shape
  np.testing.assert_allclose(mono, expected, atol=2e-3)


def test_corrupt_and_unknown_files_are_one_line_errors(tmp_path):
  whole = open(_ffmpeg_m4a(str(tmp_path / "whole.m4a"), faststart=True), "rb").read()
  truncated = tmp_path / "truncated.m4a"
  truncated.write_bytes(whole[:len(whole) // 2])   # the header still promises 1 s
  with pytest.raises(AudioError, match=r"truncated.m4a: is corrupt or truncated \(ffmpeg: ") as e:
    list(read_blocks(str(truncated), check=True))
  assert "\n" not in str(e.value)
  noise = tmp_path / "noise.m4a"
  noise.write_bytes(np.random.default_rng(0).bytes(5000))
  with pytest.raises(AudioError, match="noise.m4a: cannot read audio .*ffmpeg: ") as e:
    info(str(noise))
  assert "\n" not in str(e.value)
  silent = tmp_path / "silent.wav"
  write_audio(str(silent), np.zeros((100, 2), np.float32), 44100)
  with pytest.raises(AudioError, match="silent"):
    list(read_blocks(str(silent), check=True))


def test_a_full_disk_leaves_nothing_behind(tmp_path, monkeypatch):
  import soundfile

  from attnsep_jax.files import WriteError

  def full(*args, **kwargs):
    raise RuntimeError("Error : System error : No space left on device")
  monkeypatch.setattr(soundfile, "write", full)
  with pytest.raises(WriteError, match="a.wav: no space left on device") as e:
    write_audio(str(tmp_path / "a.wav"), np.zeros((10, 2)), 44100)
  assert "\n" not in str(e.value)
  assert os.listdir(tmp_path) == []
