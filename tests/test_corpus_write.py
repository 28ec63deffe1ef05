"""The corpus folder and the command: refusals, --force, a full disk, a missing renderer."""

import errno
import json
import os
import subprocess
import sys

import pytest

from attnsep_jax.corpus import generate_corpus, write
from attnsep_jax.corpus.__main__ import main
from attnsep_jax.files import WriteError


def _files(root) -> dict:
  """Every file under ``root`` and its bytes."""
  return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
          for d, _, names in os.walk(root) for f in names}


def test_refuses_non_empty_output_and_force_replaces_corpus(tmp_path):
  root = tmp_path / "c"
  root.mkdir()
  (root / "keep.txt").write_text("mine")
  with pytest.raises(FileExistsError):
    generate_corpus(str(root), tracks=1, test_tracks=0, seconds=0.5)
  with pytest.raises(FileExistsError):   # not a corpus: never deleted, even with force
    generate_corpus(str(root), tracks=1, test_tracks=0, seconds=0.5, force=True)
  assert (root / "keep.txt").read_text() == "mine"
  other = str(tmp_path / "d")
  generate_corpus(other, tracks=2, test_tracks=1, seconds=0.5, seed=1)
  with pytest.raises(FileExistsError):
    generate_corpus(other, tracks=1, test_tracks=0, seconds=0.5, seed=2)
  generate_corpus(other, tracks=1, test_tracks=0, seconds=0.5, seed=2, force=True)
  assert len(os.listdir(os.path.join(other, "train"))) == 1
  assert json.load(open(os.path.join(other, "corpus.json")))["seed"] == 2
  assert sorted(os.listdir(tmp_path)) == ["c", "d"]   # no staging folder left behind


def test_force_never_deletes_files_beside_a_corpus(tmp_path):
  root = tmp_path / "c"
  generate_corpus(str(root), tracks=1, test_tracks=0, seconds=0.5, seed=1)
  (root / "notes.txt").write_text("mine")
  before = _files(root)
  with pytest.raises(FileExistsError, match="notes.txt"):
    generate_corpus(str(root), tracks=1, test_tracks=0, seconds=0.5, seed=2, force=True)
  assert _files(root) == before


def test_full_disk_is_one_line_and_keeps_the_earlier_corpus(tmp_path, monkeypatch, capsys):
  out = tmp_path / "c"
  generate_corpus(str(out), tracks=1, test_tracks=0, seconds=0.5, seed=1)
  earlier = _files(out)
  write_audio, calls = write.write_audio, []

  def full_disk_midway(path, *args, **kwargs):
    calls.append(path)
    if len(calls) >= 7:   # from the second track's second file on
      raise OSError(errno.ENOSPC, "No space left on device", path)
    return write_audio(path, *args, **kwargs)

  monkeypatch.setattr(write, "write_audio", full_disk_midway)
  args = ["--out", str(out), "--tracks", "2", "--test-tracks", "1", "--seconds", "0.5",
          "--seed", "2", "--workers", "1", "--force"]
  assert main(args) == 1
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 1 and lines[0].startswith("attnsep corpus: error: cannot write the corpus")
  for part in (str(out), "no space left on device", "MiB needed", "the earlier corpus",
               "intact", "run the same command again"):
    assert part in lines[0], part
  assert len(calls) == 7
  assert sorted(os.listdir(tmp_path)) == ["c"]   # no partial corpus, no staging folder
  assert _files(out) == earlier
  with pytest.raises(WriteError) as failure:   # a new corpus: nothing earlier to keep
    generate_corpus(str(tmp_path / "new"), tracks=1, test_tracks=0, seconds=0.5)
  assert "earlier corpus" not in str(failure.value)
  assert sorted(os.listdir(tmp_path)) == ["c"]

  monkeypatch.setattr(write, "write_audio", write_audio)   # space freed: the same command
  assert main(args) == 0
  meta = json.load(open(out / "corpus.json"))
  assert meta["seed"] == 2 and len(meta["tracks"]) == 3
  assert sorted(os.listdir(tmp_path)) == ["c"]


def test_a_bare_system_error_with_no_room_left_is_a_full_disk(tmp_path, monkeypatch):
  """libsndfile says only "System error." when the disk fills up: with less
  room left than the file needs, the corpus reports the full disk it is."""
  from attnsep_jax import audio, files

  def system_error(*args, **kwargs):
    raise RuntimeError("Error opening 'drums.wav': System error.")

  monkeypatch.setattr(audio.sf, "write", system_error)
  monkeypatch.setattr(files, "free_bytes", lambda path: 1000)   # < one 0.5 s stem
  with pytest.raises(WriteError, match="no space left on device") as failure:
    generate_corpus(str(tmp_path / "c"), tracks=1, test_tracks=0, seconds=0.5)
  assert str(failure.value).startswith(f"cannot write the corpus (1 tracks of 0.5 s) to "
                                       f"{tmp_path / 'c'}: no space left on device")
  assert "System error" not in str(failure.value) and os.listdir(tmp_path) == []
  monkeypatch.setattr(files, "free_bytes", lambda path: 2**40)   # room left: another failure
  with pytest.raises(WriteError, match="System error") as failure:
    generate_corpus(str(tmp_path / "c"), tracks=1, test_tracks=0, seconds=0.5)
  assert "no space" not in str(failure.value) and os.listdir(tmp_path) == []


def test_missing_renderer_says_what_to_install(tmp_path, monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "tinysoundfont", None)   # as if not installed
  assert main(["--out", str(tmp_path / "c"), "--tracks", "1", "--seconds", "0.5"]) == 1
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 1 and lines[0].startswith("attnsep corpus: error: ")
  assert "pip install --no-deps tinysoundfont==" in lines[0]
  assert os.listdir(tmp_path) == []


def test_cli_help_and_refusal(synth_corpus, capsys):
  # python -m runs the same main as `attnsep corpus`.
  result = subprocess.run([sys.executable, "-m", "attnsep_jax.corpus", "--help"],
                          capture_output=True, text=True)
  assert result.returncode == 0 and "--soundfont" in result.stdout
  assert "attnsep corpus" in result.stdout
  assert main(["--out", synth_corpus, "--tracks", "1"]) == 1
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 1 and "--force" in lines[0]
