"""The one atomic writer: a failed or killed write never leaves a partial
output nor touches what was there; the next write succeeds."""

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from attnsep_jax import files


def _disk_full():
  return OSError(errno.ENOSPC, "No space left on device")


def _hidden(folder):
  return sorted(n for n in os.listdir(folder) if n.startswith("."))


def test_write_json_replaces_whole_and_makes_its_folder(tmp_path):
  path = tmp_path / "a" / "b.json"
  files.write_json(str(path), {"x": 1})
  files.write_json(str(path), {"y": [1, 2]})
  assert path.read_text() == '{\n  "y": [\n    1,\n    2\n  ]\n}\n'
  assert _hidden(path.parent) == []


def test_full_disk_in_a_file_write_is_one_line_and_keeps_the_old_file(tmp_path):
  path = tmp_path / "scores.json"
  files.write_json(str(path), {"sdr": 1.0})
  with pytest.raises(files.WriteError) as error:
    with files.staged_file(str(path), "the scores of 'song'",
                           intact="earlier scores are intact") as tmp:
      with open(tmp, "w") as f:
        f.write("x" * 1000)
      raise _disk_full()
  message = str(error.value)
  assert "\n" not in message and error.value.errno == errno.ENOSPC
  assert message.startswith(f"cannot write the scores of 'song' to {path}: no space left")
  assert "about 1 KiB needed" in message and " free" in message
  assert "earlier scores are intact" in message and "run the same command again" in message
  assert path.read_text() == '{\n  "sdr": 1.0\n}\n' and _hidden(tmp_path) == []
  files.write_json(str(path), {"sdr": 2.0})
  assert '"sdr": 2.0' in path.read_text()


def test_other_errors_name_their_cause(tmp_path):
  with pytest.raises(files.WriteError, match="PermissionError: denied"):
    with files.staged_file(str(tmp_path / "x.txt"), "x"):
      raise PermissionError("denied")
  with pytest.raises(FileExistsError, match="refusing to overwrite"):
    (tmp_path / "y.txt").write_text("keep")
    with files.staged_file(str(tmp_path / "y.txt"), "y", overwrite=False):
      pass
  assert (tmp_path / "y.txt").read_text() == "keep"


def test_full_disk_in_a_folder_write_keeps_the_old_folder(tmp_path):
  out = tmp_path / "export"
  with files.staged_folder(str(out), "the export") as staging:
    files.write_text(os.path.join(staging, "a.txt"), "old")
  with pytest.raises(FileExistsError, match="--force"):
    with files.staged_folder(str(out), "the export"):
      pass
  with pytest.raises(files.WriteError, match="cannot write the export .*no space left"):
    with files.staged_folder(str(out), "the export", overwrite=True) as staging:
      files.write_text(os.path.join(staging, "a.txt"), "new")
      raise _disk_full()
  assert (out / "a.txt").read_text() == "old" and _hidden(tmp_path) == []
  with files.staged_folder(str(out), "the export", overwrite=True) as staging:
    files.write_text(os.path.join(staging, "b.txt"), "new")
  assert os.listdir(out) == ["b.txt"] and _hidden(tmp_path) == []


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_kill_mid_write_keeps_the_old_output_and_the_next_write_cleans_up(tmp_path, kind):
  target = tmp_path / "out"
  writer = "staged_file" if kind == "file" else "staged_folder"
  write_inside = ("open(tmp, 'w').write('new' * 1000)" if kind == "file" else
                  "open(os.path.join(tmp, 'a'), 'w').write('new')")
  script = textwrap.dedent(f"""
      import os, signal
      from attnsep_jax import files
      with files.{writer}({str(target)!r}, "it", overwrite=True) as tmp:
        {write_inside}
        os.kill(os.getpid(), signal.SIGKILL)
      """)
  if kind == "file":
    target.write_text("old")
  else:
    os.makedirs(target)
    (target / "a").write_text("old")
  done = subprocess.run([sys.executable, "-c", script], capture_output=True)
  assert done.returncode == -9
  old = target if kind == "file" else target / "a"
  assert old.read_text() == "old" and len(_hidden(tmp_path)) == 1   # the killed write's temporary
  with getattr(files, writer)(str(target), "it", overwrite=True) as tmp:
    if kind == "file":
      open(tmp, "w").write("again")
    else:
      open(os.path.join(tmp, "a"), "w").write("again")
  assert old.read_text() == "again" and _hidden(tmp_path) == []


def test_disk_full_is_recognised_through_library_wrappers():
  wrapped = ValueError("RESOURCE_EXHAUSTED: Failed to write 4075520 bytes to file 11: "
                       "No space left on device [os_error_code='28']")
  assert files.is_disk_full(wrapped)
  try:
    try:
      raise _disk_full()
    except OSError as e:
      raise RuntimeError("save failed") from e
  except RuntimeError as chained:
    assert files.is_disk_full(chained)
  assert not files.is_disk_full(ValueError("bad shape"))


def test_a_bare_system_error_with_too_little_room_is_a_full_disk(tmp_path, monkeypatch):
  # libsndfile's whole message for ENOSPC is "System error.".
  monkeypatch.setattr(files, "free_bytes", lambda path: 10)
  error = files.write_error(OSError(errno.EIO, "System error."), "the drums stem", str(tmp_path),
                            needed_bytes=2**20)
  assert "no space left on device (about 1.0 MiB needed, 1 KiB free)" in str(error)
  monkeypatch.setattr(files, "free_bytes", lambda path: 2**30)
  error = files.write_error(OSError(errno.EIO, "System error."), "the drums stem", str(tmp_path),
                            needed_bytes=2**20)
  assert "OSError: System error." in str(error) and "no space" not in str(error)


def test_a_full_disk_stays_one_across_processes_and_nested_writes(tmp_path, monkeypatch):
  import pickle
  monkeypatch.setattr(files, "free_bytes", lambda path: 10)
  error = files.write_error(OSError(errno.EIO, "System error."), "the drums stem", str(tmp_path),
                            needed_bytes=2**20)
  copied = pickle.loads(pickle.dumps(error))   # as a worker process's error arrives
  assert type(copied) is files.WriteError and str(copied) == str(error)
  assert copied.errno == errno.ENOSPC and files.is_disk_full(copied)
  target = tmp_path / "song"
  with pytest.raises(files.WriteError) as failure:
    with files.staged_folder(str(target), "the stems of song", needed_bytes=3 * 2**20) as folder:
      raise copied   # a file inside the folder could not be written
  assert str(failure.value).startswith(f"cannot write the stems of song to {target}: no space "
                                       "left on device (about 3.0 MiB needed")
  assert os.listdir(tmp_path) == []
  with pytest.raises(files.WriteError) as failure:   # other nested failures pass unchanged
    with files.staged_folder(str(target), "the stems of song") as folder:
      raise files.WriteError(f"cannot write {folder}/drums.wav: OSError: Input/output error")
  assert "drums.wav: OSError" in str(failure.value) and os.listdir(tmp_path) == []
