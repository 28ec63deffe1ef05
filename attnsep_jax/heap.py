"""Keeps the C heap's freed memory for reuse, so that XLA's CPU steps stop page-faulting.

XLA's CPU backend allocates each step's scratch buffer afresh (about 1.1 GB
for configs/cpu_small_hybrid.py's training step) from a thread of its own.
glibc serves an allocation that large from a fresh ``mmap`` and unmaps it
when freed, so every step first touches 280,000 new pages and the kernel
zeroes each one: about a quarter of the step on one core of a 2-core AMD EPYC
(docs/performance.md, "The C heap"). Kept on one heap that is never trimmed,
the same pages serve every step.

``keep_freed_memory`` sets that with ``mallopt`` at run time; it must run
before JAX starts its threads, because a thread keeps the heap (arena) it
first took. ``GLIBC_TUNABLES`` is the same setting for a child process
(``bench.quality`` gives it to every contender, the PyTorch peers included).
The cost: the process keeps its peak memory until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc's malloc.h parameter numbers.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
# mallopt takes an int: trim only when 2 GiB lie free at the heap's top.
_TRIM_THRESHOLD_BYTES = 2**31 - 1
GLIBC_TUNABLES = ("glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
                  f"glibc.malloc.trim_threshold={_TRIM_THRESHOLD_BYTES}")


def keep_freed_memory() -> bool:
  """One heap for all threads, no ``mmap`` per allocation, no trimming.

  Returns whether it was set: False where the C library is not glibc, or
  where ``GLIBC_TUNABLES`` already chooses the heap's settings (the user's
  choice wins), or with ``ATTNSEP_KEEP_HEAP=0``.
  """
  if os.environ.get("ATTNSEP_KEEP_HEAP", "1") == "0":
    return False
  if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))
  return all(mallopt(ctypes.c_int(p), ctypes.c_int(v)) == 1 for p, v in settings)
