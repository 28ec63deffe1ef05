"""attnsep export and attnsep separate: round trips, formats, ffmpeg input, --jobs, a full
disk, and bad input."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from attnsep_jax import SOURCES
from attnsep_jax.export import ModelLoadError, export, load_model
from attnsep_jax.inference import separate
from attnsep_jax.separate import main as separate_main


def _song(path, seconds=0.7, rate=44100, channels=2, seed=0):
  rng = np.random.default_rng(seed)
  audio = (0.2 * rng.normal(size=(int(seconds * rate), channels))).astype(np.float32)
  sf.write(path, audio, rate, subtype="FLOAT" if path.endswith(".wav") else "PCM_16")
  return audio


def test_export_reloads_into_identical_outputs(tiny_export, tiny_config, tiny_model_and_params,
                                               tmp_path):
  model, params = tiny_model_and_params
  config, loaded_model, loaded = load_model(tiny_export)
  assert config.to_dict() == tiny_config.to_dict()
  x = np.random.default_rng(0).normal(size=(1, 400, 2)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(model.apply({"params": params}, x)),
                                np.asarray(loaded_model.apply({"params": loaded}, x)))
  # Exporting an export gives the same parameters again, and refuses to overwrite.
  again = str(tmp_path / "again")
  meta = export(tiny_export, again)
  assert meta["params"] > 0 and meta["bytes"] > 0
  assert json.load(open(os.path.join(again, "export.json")))["checksum"] == \
      json.load(open(os.path.join(tiny_export, "export.json")))["checksum"]
  with pytest.raises(FileExistsError):
    export(tiny_export, again)


def test_incompatible_config_is_a_clear_error(tiny_export, tmp_path):
  import shutil
  broken = str(tmp_path / "broken")
  shutil.copytree(tiny_export, broken)
  config_path = os.path.join(broken, "config.json")
  config = json.load(open(config_path))
  config["model"]["channels"] = [4, 16]
  json.dump(config, open(config_path, "w"))
  with pytest.raises(ModelLoadError, match="do not fit the model"):
    load_model(broken)


def test_missing_and_damaged_checkpoints(tiny_export, tmp_path):
  import shutil
  with pytest.raises(ModelLoadError, match="does not exist"):
    load_model(str(tmp_path / "nothing"))
  damaged = str(tmp_path / "damaged")
  shutil.copytree(tiny_export, damaged)
  shutil.rmtree(os.path.join(damaged, "params"))
  with pytest.raises(ModelLoadError, match="cannot read params"):
    load_model(damaged)


def test_separate_cli_writes_stems_equal_to_the_library(tiny_export, tiny_config,
                                                         tiny_model_and_params, tmp_path):
  model, params = tiny_model_and_params
  song = str(tmp_path / "song.wav")
  audio = _song(song)
  out = str(tmp_path / "out")
  assert separate_main([song, "--checkpoint", tiny_export, "--out", out, "--quiet",
                        "--accompaniment"]) == 0
  expected = separate(model, params, audio, sample_rate=44100, **tiny_config.inference)
  for index, name in enumerate(SOURCES):
    stem, rate = sf.read(os.path.join(out, "song", f"{name}.wav"), dtype="float32")
    assert rate == 44100 and stem.shape == audio.shape
    np.testing.assert_allclose(stem, expected[index], atol=1e-6)
  acc, _ = sf.read(os.path.join(out, "song", "accompaniment.wav"), dtype="float32")
  np.testing.assert_allclose(acc, expected[:3].sum(axis=0), atol=1e-5)
  assert not [f for f in os.listdir(os.path.join(out, "song")) if f.startswith(".")]

  # A second run refuses to overwrite; --force does, and the stems stay whole.
  before = os.path.getmtime(os.path.join(out, "song", "drums.wav"))
  assert separate_main([song, "--checkpoint", tiny_export, "--out", out, "--quiet"]) == 1
  assert os.path.getmtime(os.path.join(out, "song", "drums.wav")) == before
  assert separate_main([song, "--checkpoint", tiny_export, "--out", out, "--quiet",
                        "--force"]) == 0


def test_mono_other_rate_and_flac(tiny_export, tmp_path):
  song = str(tmp_path / "mono.flac")
  _song(song, seconds=0.5, rate=22050, channels=1)
  out = str(tmp_path / "out")
  # FLAC holds integers: without --bits it is written with 24 bits.
  assert separate_main([song, "--checkpoint", tiny_export, "--out", out, "--quiet",
                        "--format", "flac"]) == 0
  info = sf.info(os.path.join(out, "mono", "vocals.flac"))
  assert info.channels == 1 and info.samplerate == 22050
  assert abs(info.frames - int(0.5 * 22050)) <= 2
  assert info.subtype == "PCM_24"


def test_folders_globs_stem_choices_template_and_settings(tiny_export, tiny_config,
                                                          tiny_model_and_params, tmp_path,
                                                          capsys):
  model, params = tiny_model_and_params
  album = tmp_path / "music" / "album"
  album.mkdir(parents=True)
  a = _song(str(album / "a.wav"), seconds=0.4)
  _song(str(album / "b.flac"), seconds=0.3, seed=1)
  (album / "notes.txt").write_text("not audio")
  (tmp_path / "loose").mkdir()
  _song(str(tmp_path / "loose" / "c.wav"), seconds=0.2, seed=2)
  out = str(tmp_path / "out")
  settings = ["--segment", "0.25", "--overlap", "0.1", "--batch-size", "3",
              "--soft-mask-power", "1"]
  assert separate_main([str(tmp_path / "music"), str(tmp_path / "loose" / "*.wav"),
                        "--checkpoint", tiny_export, "--out", out, "--quiet",
                        "--two-stems", "vocals", "--filename", "{stem}/{track}.{ext}"]
                       + settings) == 0
  assert sorted(os.listdir(out)) == ["no_vocals", "vocals"]
  assert sorted(os.listdir(os.path.join(out, "vocals"))) == ["a.wav", "b.wav", "c.wav"]
  expected = separate(model, params, a, sample_rate=44100, segment_seconds=0.25, overlap=0.1,
                      batch_size=3, shifts=0, soft_mask_power=1.0,
                      wiener_iterations=tiny_config.inference.wiener_iterations)
  vocals, _ = sf.read(os.path.join(out, "vocals", "a.wav"), dtype="float32")
  rest, _ = sf.read(os.path.join(out, "no_vocals", "a.wav"), dtype="float32")
  np.testing.assert_allclose(vocals, expected[SOURCES.index("vocals")], atol=1e-6)
  np.testing.assert_allclose(rest, expected.sum(axis=0) - expected[SOURCES.index("vocals")],
                             atol=1e-5)
  assert "separated 3 of 3 songs" in capsys.readouterr().err

  # Only the stems asked for, as mp3 (through ffmpeg).
  assert separate_main([str(album / "a.wav"), "--checkpoint", tiny_export, "--out", out,
                        "--quiet", "--stems", "drums,bass", "--format", "mp3"]) == 0
  assert sorted(os.listdir(os.path.join(out, "a"))) == ["bass.mp3", "drums.mp3"]
  info = sf.info(os.path.join(out, "a", "drums.mp3"))
  assert info.samplerate == 44100 and info.duration == pytest.approx(0.4, abs=0.1)
  for clash in (["--stems", "drums", "--two-stems", "bass"], ["--stems", "piano"],
                ["--filename", "{track}.{ext}"], ["--overlap", "1.5"],
                ["--soft-mask-power", "-1"], ["--wiener-iterations", "-1"]):
    with pytest.raises(SystemExit):
      separate_main([str(album / "a.wav"), "--checkpoint", tiny_export, "--out", out] + clash)
  capsys.readouterr()
  assert separate_main([str(album / "a.wav"), "--checkpoint", tiny_export, "--out", out,
                        "--soft-mask-power", "0", "--wiener-iterations", "2"]) == 1
  err = capsys.readouterr().err
  assert err.startswith("attnsep separate: error: ") and "soft_mask_power" in err


def test_bad_inputs_fail_one_by_one(tiny_export, tmp_path, capsys):
  good = str(tmp_path / "good.wav")
  _song(good, seconds=0.3)
  silent = str(tmp_path / "silent.wav")
  sf.write(silent, np.zeros((1000, 2), np.float32), 44100)
  nan = str(tmp_path / "nan.wav")
  bad = np.full((1000, 2), np.nan, np.float32)
  sf.write(nan, bad, 44100, subtype="FLOAT")
  empty = str(tmp_path / "empty.wav")
  sf.write(empty, np.zeros((0, 2), np.float32), 44100)
  garbage = str(tmp_path / "garbage.wav")
  open(garbage, "wb").write(b"RIFF this is not audio")
  random_mp3 = str(tmp_path / "random.mp3")
  open(random_mp3, "wb").write(np.random.default_rng(0).bytes(5000))
  truncated = str(tmp_path / "truncated.wav")
  _song(truncated, seconds=0.3)
  whole = open(truncated, "rb").read()
  open(truncated, "wb").write(whole[:len(whole) // 2])   # the header still says 0.3 s
  folder = str(tmp_path / "a_folder")
  os.makedirs(folder)
  missing = str(tmp_path / "missing.wav")
  out = str(tmp_path / "out")
  songs = [silent, nan, empty, garbage, random_mp3, truncated, folder, missing, good]
  assert separate_main(songs + ["--checkpoint", tiny_export, "--out", out, "--quiet"]) == 1
  err = capsys.readouterr().err
  for path, words in [(silent, "silent"), (nan, "NaN"), (empty, "empty"),
                      (garbage, "cannot read audio"), (random_mp3, "not in an audio format"),
                      (truncated, "truncated: its header promises 0.30 s"),
                      (folder, "folder with no audio files"), (missing, "no such file")]:
    lines = [l for l in err.splitlines() if l.startswith(f"attnsep separate: error: {path}:")]
    assert len(lines) == 1 and words in lines[0], (path, err)
  assert "does not exist" not in err
  assert "8 of 9 songs failed" in err
  assert os.path.exists(os.path.join(out, "good", "vocals.wav"))
  assert not os.path.exists(os.path.join(out, "silent"))


def test_bad_checkpoint_exits_with_one_line(tmp_path, capsys):
  song = str(tmp_path / "s.wav")
  _song(song, seconds=0.1)
  assert separate_main([song, "--checkpoint", str(tmp_path / "nope"), "--out",
                        str(tmp_path / "o")]) == 1
  err = capsys.readouterr().err
  assert err.startswith("attnsep separate: error: ") and "does not exist" in err
  assert len(err.strip().splitlines()) == 1


def test_m4a_input_through_ffmpeg_and_a_progress_callback(tiny_export, tiny_config,
                                                          tiny_model_and_params, tmp_path):
  import subprocess

  from attnsep_jax.audio import read_audio
  from attnsep_jax.separate import separate_file
  model, params = tiny_model_and_params
  song = str(tmp_path / "tone.m4a")
  subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                  "sine=frequency=330:duration=0.6:sample_rate=44100", "-ac", "2",
                  "-c:a", "aac", song], check=True)
  fractions, settings = [], {**tiny_config.inference, "batch_size": 1}
  targets = separate_file(song, str(tmp_path / "out"), model, params, tiny_config,
                          inference=settings, progress=fractions.append)
  decoded, _ = read_audio(song)
  expected = separate(model, params, decoded, sample_rate=44100, **settings)
  for index, name in enumerate(SOURCES):
    stem, rate = sf.read(targets[name], dtype="float32")
    assert rate == 44100 and stem.shape == decoded.shape
    np.testing.assert_allclose(stem, expected[index], atol=1e-6)
  assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 1


def _stderr_lines(text):
  """What a run says of its songs: everything but the timing of the summary."""
  return [line for line in text.splitlines() if not line.startswith("separated ")]


def test_jobs_give_the_same_stems_and_summary(tiny_export, tmp_path, capsys):
  songs = [str(tmp_path / "a.wav"), str(tmp_path / "bad.wav"), str(tmp_path / "b.flac")]
  _song(songs[0], seconds=0.6)
  open(songs[1], "wb").write(b"RIFF not audio")
  _song(songs[2], seconds=0.4, rate=22050, seed=1)
  runs = {}
  for jobs in (1, 2):
    out = str(tmp_path / f"out{jobs}")
    assert separate_main(songs + ["--checkpoint", tiny_export, "--out", out, "--quiet",
                                  "--jobs", str(jobs)]) == 1
    runs[jobs] = (out, capsys.readouterr())
  (out1, said1), (out2, said2) = runs[1], runs[2]
  assert _stderr_lines(said1.err) == _stderr_lines(said2.err)
  assert f"attnsep separate: error: {songs[1]}: cannot read audio" in said2.err
  assert "1 of 3 songs failed" in said2.err
  assert "separated 2 of 3 songs" in said2.err
  for song in ("a", "b"):   # the samples bit for bit (float wav headers hold a time stamp)
    for name in SOURCES:
      one, _ = sf.read(os.path.join(out1, song, f"{name}.wav"), dtype="float32")
      two, _ = sf.read(os.path.join(out2, song, f"{name}.wav"), dtype="float32")
      np.testing.assert_array_equal(one, two)


def test_a_full_disk_stops_the_run_and_keeps_earlier_stems(tiny_export, tmp_path, capsys,
                                                           monkeypatch):
  import errno

  from attnsep_jax.stems import StemWriter
  songs = [str(tmp_path / f"{name}.wav") for name in ("a", "b", "c")]
  for seed, song in enumerate(songs):
    _song(song, seconds=0.6, seed=seed)
  out = str(tmp_path / "out")
  write = StemWriter.write

  def write_until_b_fills_the_disk(self, name, audio, last=False):
    if os.sep + "b" + os.sep in next(iter(self.paths.values())):
      self.calls = getattr(self, "calls", 0) + 1
      if self.calls == 3:   # b's drums and bass are partly on disk; "other" fails
        raise OSError(errno.ENOSPC, "No space left on device")
    write(self, name, audio, last)

  monkeypatch.setattr(StemWriter, "write", write_until_b_fills_the_disk)
  args = songs + ["--checkpoint", tiny_export, "--out", out, "--quiet"]
  assert separate_main(args) == 1
  err = capsys.readouterr().err
  lines = [line for line in err.splitlines()
           if line.startswith(f"attnsep separate: error: {songs[1]}: ")]
  assert len(lines) == 1, err
  for words in ("cannot write the other stem of 'b'", os.path.join(out, "b", "other.wav"),
                "no space left on device (about", " needed", "intact", "--skip-existing"):
    assert words in lines[0]
  assert f"attnsep separate: error: {songs[2]}: not attempted: the disk is full" in err
  leftovers = [os.path.join(d, f) for d, _, names in os.walk(out) for f in names
               if f.startswith(".")]
  assert leftovers == []
  assert sorted(os.listdir(os.path.join(out, "a"))) == sorted(f"{s}.wav" for s in SOURCES)
  assert not os.path.exists(os.path.join(out, "b")) or os.listdir(os.path.join(out, "b")) == []

  # Space freed: --skip-existing goes on where the run stopped.
  monkeypatch.setattr(StemWriter, "write", write)
  before = os.path.getmtime(os.path.join(out, "a", "drums.wav"))
  assert separate_main(args + ["--skip-existing"]) == 0
  assert "skipped 1 whose stems exist" in capsys.readouterr().err
  assert os.path.getmtime(os.path.join(out, "a", "drums.wav")) == before
  assert os.path.exists(os.path.join(out, "c", "vocals.wav"))
