"""attnsep_jax.heap: freed memory is reused, not mapped afresh, and the user's choice wins."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")

# 64 MiB malloc'ed, written and freed twice on a thread of its own (as XLA
# allocates a step's scratch); prints whether the heap was kept and the minor
# page faults of the second round. Through libc itself: numpy asks for huge
# pages, which would hide the faults.
PROBE = """
import ctypes, ctypes.util, resource, threading
from attnsep_jax import heap
kept = heap.keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def rounds(out):
  for _ in range(2):
    before = faults()
    buffer = libc.malloc(64 << 20)
    ctypes.memset(buffer, 1, 64 << 20)
    libc.free(buffer)
  out.append(faults() - before)
out = []
thread = threading.Thread(target=rounds, args=(out,))
thread.start(); thread.join()
print(kept, out[0])
"""


def run_probe(**env_overrides):
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "ATTNSEP_KEEP_HEAP")}
  env.update(env_overrides)
  out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                       check=True).stdout.split()
  return out[0] == "True", int(out[1])


def test_kept_heap_reuses_freed_pages():
  kept, faults = run_probe()
  default_kept, default_faults = run_probe(ATTNSEP_KEEP_HEAP="0")
  assert kept and not default_kept
  # 64 MiB is 16,384 pages of 4 KiB (32 of 2 MiB where the kernel always
  # uses huge pages); glibc maps them afresh every round.
  assert faults < 200 and faults * 10 < default_faults


def test_user_settings_win():
  assert run_probe(ATTNSEP_KEEP_HEAP="0")[0] is False
  assert run_probe(GLIBC_TUNABLES="glibc.malloc.arena_max=2")[0] is False
