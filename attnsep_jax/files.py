"""The one home of safe writes: every file and folder the project writes goes
through here.

A write goes to a hidden temporary beside its target (same filesystem, so the
final rename is atomic) and is renamed over the target only when complete:
a process killed mid-write leaves the previous file, or none, never a
truncated one.  Any failure -- a full disk above all -- removes the partial
output and raises ``WriteError`` with one line that says what was being
written, where, how much space it needed, what is intact and how to go on.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import uuid
from typing import Iterator


class WriteError(OSError):
  """A write failed; the partial output is gone and earlier files are intact."""

  def __reduce__(self):
    # Keeps errno across processes (a pickled OSError of one argument loses
    # it), so that a full disk in a worker is still one to the caller.
    return _write_error_from, (str(self), self.errno)


def _write_error_from(message: str, code: int | None) -> WriteError:
  error = WriteError(message)
  error.errno = code
  return error


def free_bytes(path: str) -> int | None:
  """Free space on the filesystem holding ``path`` (or its nearest parent)."""
  path = os.path.abspath(path)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  try:
    return shutil.disk_usage(path).free
  except OSError:
    return None


def folder_bytes(path: str) -> int:
  """Bytes of every file under ``path`` (a file's own size for a file)."""
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
             for f in files if os.path.isfile(os.path.join(d, f)))


def _size(n: int) -> str:
  if n >= 2**30:
    return f"{n / 2**30:.1f} GiB"
  return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{max(1, round(n / 2**10))} KiB"


def is_disk_full(error: BaseException) -> bool:
  """ENOSPC or EDQUOT anywhere in the exception's chain (libraries wrap it)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
      return True
    if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


def _looks_full(error: BaseException, free: int | None, needed_bytes: int | None) -> bool:
  """libsndfile reports a full disk as a bare "System error." (EIO, or no
  errno once wrapped): such a failure, with less room left than the output
  needs, is the full disk it looks like."""
  if getattr(error, "errno", None) not in (None, errno.EIO):
    return False
  return free is not None and needed_bytes is not None and free < needed_bytes


def write_error(error: BaseException, what: str, path: str, needed_bytes: int | None = None,
                intact: str = "", resume: str = "") -> WriteError:
  """The one-line WriteError for a failed write (raise it ``from error``).

  Args:
    error: what the write raised.
    what: what was being written ("the checkpoint of step 500").
    path: where.
    needed_bytes: the size of the complete output, when known.
    intact: which earlier results survive ("checkpoints 100-400 are intact").
    resume: how to go on ("free space and run the same command again").
  """
  free = free_bytes(path)
  full = is_disk_full(error) or _looks_full(error, free, needed_bytes)
  if full:
    reason = "no space left on device"
    sizes = [f"about {_size(needed_bytes)} needed"] if needed_bytes else []
    sizes += [f"{_size(free)} free"] if free is not None else []
    if sizes:
      reason += f" ({', '.join(sizes)})"
    resume = resume or "free some space and run the same command again"
  else:
    text = getattr(error, "strerror", None) or str(error)   # no "[Errno 5]" prefix
    text = (text.strip().splitlines() or [type(error).__name__])[0][:200]
    reason = f"{type(error).__name__}: {text}"
  parts = [f"cannot write {what} to {path}: {reason}", "the partial output was removed"]
  parts += [p for p in (intact, resume) if p]
  return _write_error_from("; ".join(parts),
                           errno.ENOSPC if full else getattr(error, "errno", None))


def _temporary_beside(path: str, suffix: str = "") -> str:
  folder, name = os.path.split(os.path.abspath(path))
  return os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp{suffix}")


def _remove_stale_temporaries(path: str) -> None:
  """What a killed earlier write of ``path`` left beside it (hidden, never read)."""
  folder, name = os.path.split(os.path.abspath(path))
  for leftover in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp*")):
    _remove(leftover)


def _remove(path: str) -> None:
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  else:
    with contextlib.suppress(OSError):
      os.remove(path)


@contextlib.contextmanager
def _removed_on_failure(temporary: str, what: str, path: str, intact: str, resume: str,
                        needed_bytes: int | None, folder: bool = False):
  """Any failure removes ``temporary``; an OSError becomes the one-line WriteError.

  In a ``folder``, a full disk while writing a file inside is restated for
  the folder: the user asked for the folder, not for a file under its hidden
  temporary name.
  """
  try:
    yield
  except BaseException as e:
    if needed_bytes is None and os.path.exists(temporary):
      needed_bytes = folder_bytes(temporary)
    _remove(temporary)
    nested_full_disk = folder and isinstance(e, WriteError) and is_disk_full(e)
    if nested_full_disk or (isinstance(e, OSError)
                            and not isinstance(e, (WriteError, FileExistsError))):
      raise write_error(e, what, path, needed_bytes, intact, resume) from e
    raise


@contextlib.contextmanager
def staged_file(path: str, what: str = "a file", overwrite: bool = True, suffix: str = "",
                intact: str = "", resume: str = "",
                needed_bytes: int | None = None) -> Iterator[str]:
  """Yields a temporary path to write; renames it to ``path`` on success.

  Args:
    path: the target file; its folder must exist.
    what: for the error message ("the museval scores of 'song'").
    overwrite: replace an existing target (else FileExistsError up front).
    suffix: for the temporary's name (an extension some writers need).
    intact, resume: see ``write_error``.
    needed_bytes: the complete file's size, when known (else the partial
      file's): a failure with less room left is a full disk.
  Raises:
    WriteError: the write or the rename failed; nothing is left behind.
  """
  if not overwrite and os.path.exists(path):
    raise FileExistsError(f"{path} exists; refusing to overwrite it")
  tmp = _temporary_beside(path, suffix)
  with _removed_on_failure(tmp, what, path, intact, resume, needed_bytes):
    yield tmp
    os.replace(tmp, path)
  _remove_stale_temporaries(path)


@contextlib.contextmanager
def staged_folder(path: str, what: str = "a folder", overwrite: bool = False,
                  intact: str = "", resume: str = "",
                  needed_bytes: int | None = None) -> Iterator[str]:
  """Yields an empty temporary folder; swaps it in for ``path`` on success.

  Arguments as ``staged_file``'s; a full disk while writing a file inside
  is reported as this folder's.

  With ``overwrite`` an existing ``path`` is kept until the new folder is
  complete, then replaced (two renames; a kill between them leaves the old
  folder under a hidden name beside the new one, never a partial one).
  """
  path = os.path.abspath(path)
  if not overwrite and os.path.exists(path):
    raise FileExistsError(f"{path} exists; use --force to replace it")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  staging = _temporary_beside(path)
  os.makedirs(staging)
  with _removed_on_failure(staging, what, path, intact, resume, needed_bytes, folder=True):
    yield staging
    if os.path.exists(path):
      old = _temporary_beside(path, ".old")
      os.rename(path, old)
      os.rename(staging, path)
      _remove(old)
    else:
      os.rename(staging, path)
  _remove_stale_temporaries(path)


def write_text(path: str, text: str, what: str = "a text file", **kwargs) -> None:
  """Writes ``text`` to ``path`` atomically (creating its folder)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with staged_file(path, what, **kwargs) as tmp:
    with open(tmp, "w") as f:
      f.write(text)


def write_json(path: str, payload, what: str = "a JSON file", indent: int | None = 2,
               sort_keys: bool = False, default=None, **kwargs) -> None:
  """Writes ``payload`` as JSON to ``path`` atomically (creating its folder).

  ``default`` converts what JSON cannot hold (``float`` for numpy scalars).
  """
  text = json.dumps(payload, indent=indent, sort_keys=sort_keys, default=default)
  write_text(path, text + "\n", what, **kwargs)
