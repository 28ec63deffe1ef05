"""Small helpers shared by the benchmark scripts.

Measurements, not model code: peak RSS from /proc, the machine's float32
matmul peak, FLOP counts of a JAX function, random parameters that skip the
slow jitted init, and table/JSON output.  Importing this module does not
import JAX (the peer worker imports it from a venv without JAX).

Children (workers, the peers' scripts) run as ``python -m bench.<name>`` with
the repository root as their working directory (``module_command``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_command(python: str, module: str, *args: str) -> list[str]:
  """The command running ``bench.<module>`` under ``python`` (run it in REPO_ROOT)."""
  return [python, "-m", f"bench.{module}", *args]


# ----------------------------------------------------------------- memory / time
def peak_rss_mb() -> float:
  """This process's peak resident set size (VmHWM), in MiB."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  import resource  # not Linux /proc: ru_maxrss is KiB on Linux, bytes on macOS
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


def minor_page_faults() -> int:
  """Minor page faults of this process so far: fresh pages the kernel had to map."""
  import resource
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(fn, *args, **kwargs):
  """(result, seconds) of one call."""
  start = time.perf_counter()
  result = fn(*args, **kwargs)
  return result, time.perf_counter() - start


def median(values):
  values = sorted(values)
  n = len(values)
  if not n:
    return float("nan")
  return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


# ----------------------------------------------------------------- machine
_MATMUL_SNIPPET = """
import sys, time, numpy as np
n, reps = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
a @ b
best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter())
           for _ in range(reps))
print(2.0 * n ** 3 / best / 1e9)
"""


def matmul_peak_gflops(threads: int, size: int = 2048, reps: int = 5,
                       python: str | None = None) -> float:
  """Best float32 numpy (OpenBLAS) matmul GFLOP/s with ``threads`` threads.

  Runs in a child process because BLAS reads its thread count once, at load.
  """
  env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
             MKL_NUM_THREADS=str(threads))
  out = subprocess.run([python or sys.executable, "-c", _MATMUL_SNIPPET, str(size), str(reps)],
                       env=env, capture_output=True, text=True, check=True)
  return float(out.stdout.strip())


def xla_matmul_gflops(size: int = 2048, reps: int = 5) -> float:
  """Best float32 matmul GFLOP/s through XLA's CPU backend (in this process)."""
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  best = min(timed(lambda: f(a).block_until_ready())[1] for _ in range(reps))
  return 2.0 * size ** 3 / best / 1e9


def machine_info() -> dict:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return {"cpu": cpu, "cores": os.cpu_count(), "load_average": list(os.getloadavg()),
          "python": platform.python_version(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def warn_if_busy(threshold: float = 0.5) -> None:
  """Timings on a shared 2-core machine are only as good as its idleness."""
  load = os.getloadavg()[0]
  if load > threshold:
    print(f"# warning: 1-minute load average is {load:.2f}; timings will be noisy",
          file=sys.stderr)


# ----------------------------------------------------------------- JAX helpers
def thread_env(threads: int) -> dict:
  """Environment for a child process limited to ``threads`` CPU threads.

  XLA's CPU backend sizes its pool from the visible cores, so fewer threads
  than cores is done with CPU affinity (``taskset``), see ``thread_prefix``.
  """
  return dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))


def thread_prefix(threads: int) -> list[str]:
  """``taskset`` prefix pinning a child to ``threads`` cores (none when all)."""
  if threads >= (os.cpu_count() or 1):
    return []
  return ["taskset", "-c", ",".join(str(i) for i in range(threads))]


def random_params(model, seed: int = 0):
  """Random float32 parameters of ``model`` without running its init.

  ``jax.jit(model.init)`` of the paper model takes tens of seconds on CPU
  (threefry per parameter shape); benchmarks only need finite, well-scaled
  weights: N(0, 1/fan_in) kernels, zero biases, unit norm scales.
  """
  import jax
  import numpy as np
  from attnsep_jax.models.network import abstract_params
  rng = np.random.default_rng(seed)

  def make(path, leaf):
    name = getattr(path[-1], "key", str(path[-1]))
    if name == "scale":
      return np.ones(leaf.shape, np.float32)
    if name == "bias":
      return np.zeros(leaf.shape, np.float32)
    fan_in = max(1, math.prod(leaf.shape[:-1]))
    return (rng.standard_normal(leaf.shape, dtype=np.float32) / math.sqrt(fan_in))
  return jax.tree_util.tree_map_with_path(make, abstract_params(model))


def xla_flops(compiled) -> float:
  """FLOPs of a compiled executable by XLA's cost analysis.

  XLA counts the body of a loop once, whatever its trip count, so the LSTM
  recurrences (``lax.scan``) are undercounted; see ``jaxpr_matmul_flops``.
  """
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get("flops", float("nan")))


def jaxpr_matmul_flops(fn, *args, **kwargs) -> float:
  """Multiply-add FLOPs (2 per MAC) of every dot and convolution in ``fn``.

  Walks the jaxpr and multiplies scan bodies by their length, which XLA's cost
  analysis does not; elementwise work is left out, so this is the figure to
  compare with a matmul peak.  Transposed convolutions are counted as the
  dilated convolutions they lower to (zeros included), as XLA executes them.
  """
  import jax
  import numpy as np

  def dot_flops(eqn):
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    k = math.prod(lhs[d] for d in lhs_contract)
    return 2.0 * np.prod(eqn.outvars[0].aval.shape, dtype=np.float64) * k

  def conv_flops(eqn):
    rhs = eqn.invars[1].aval.shape
    out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
    per_output = math.prod(rhs) / rhs[out_feature_dim]
    return 2.0 * np.prod(eqn.outvars[0].aval.shape, dtype=np.float64) * per_output

  def count(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
      name = eqn.primitive.name
      if name == "dot_general":
        total += dot_flops(eqn)
      elif name == "conv_general_dilated":
        total += conv_flops(eqn)
      times = eqn.params.get("length", 1) if name == "scan" else 1
      for param in eqn.params.values():
        for sub in param if isinstance(param, (list, tuple)) else (param,):
          inner = getattr(sub, "jaxpr", sub)
          if hasattr(inner, "eqns"):
            total += times * count(inner)
    return total

  return count(jax.make_jaxpr(fn, **kwargs)(*args).jaxpr)


# ----------------------------------------------------------------- output
def print_table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
  """A Markdown table of ``rows`` (floats to 3 significant digits)."""
  from attnsep_jax.tables import markdown_table

  def fmt(value):
    if isinstance(value, float):
      return "nan" if math.isnan(value) else f"{value:.3g}"
    return "" if value is None else str(value)
  if title:
    print(f"\n{title}")
  print(markdown_table(columns, ([fmt(row.get(c)) for c in columns] for row in rows)))


def write_json(path: str | None, payload: dict) -> None:
  """Writes ``payload`` (numpy scalars become floats) to ``path``, if given."""
  from attnsep_jax.files import write_text
  if not path:
    return
  write_text(path, json.dumps(payload, indent=2, default=float) + "\n", "benchmark results")
  print(f"# wrote {path}", file=sys.stderr)


def save_figure(fig, path: str, dpi: int) -> None:
  """Saves a matplotlib figure through the project's atomic writer."""
  from attnsep_jax.files import staged_file
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with staged_file(path, "a plot", suffix=os.path.splitext(path)[1]) as tmp:
    fig.savefig(tmp, dpi=dpi)
  print(f"# wrote {path}", file=sys.stderr)


def run_json(cmd: list[str], out: str, env: dict | None = None) -> dict:
  """Runs a child (in REPO_ROOT) that writes a JSON object to ``out``; returns the object."""
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO_ROOT)
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
  with open(out) as f:
    return json.load(f)
