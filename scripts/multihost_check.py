"""Proves multi-process data parallelism on one machine: 2 processes == 1 process.

Runs ``train_and_evaluate`` on the same global batches

1. in one process with two (fake) CPU devices -- the reference;
2. in two processes on localhost, one CPU device each, joined by
   ``jax.distributed.initialize`` with JAX's gloo CPU collectives; each feeds
   only its half of every global batch and separates half the validation
   tracks; both write one shared workdir;
3. (``--single-device``) in one process with one device, for information;

then compares the parameters, optimiser state and EMA of the final
checkpoints and the logged metrics.  Runs 1 and 2 do the same arithmetic
(each device its row, then a mean of two numbers, which is exact in any
order), so they must agree to float32 round-off (``TOLERANCES``: the float32
sums inside a device follow the thread layout, and gloo's reduction is not
XLA's); run 3 sums the batch in another order, and Adam amplifies that
rounding in parameters whose gradient is ~0 (see docs/training.md), so it
agrees only to float tolerance.

    .venv/bin/python scripts/multihost_check.py [--steps 3] [--corpus DIR]

With ``--corpus`` the real ChunkLoader reads a MUSDB-layout folder (e.g. the
built-in corpus); by default an in-memory synthetic loader with the same
sharding contract is used, so the check needs no data on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(steps: int, corpus: str | None):
  from attnsep_jax.config import apply_overrides, load_config
  overrides = [f"train.num_steps={steps}", "train.log_every_steps=1",
               f"train.eval_every_steps={steps}", "train.checkpoint_every_steps=2",
               "data.batch_size=2", "optim.warmup_steps=0", "optim.learning_rate=3e-3"]
  if corpus:
    overrides += [f"data.root={corpus!r}"]
  return apply_overrides(load_config(os.path.join(REPO, "configs", "tiny.py")), overrides)


def worker(args) -> None:
  """One training process (also the 1-process reference when num_processes=1)."""
  import jax
  cache = os.environ.get("ATTNSEP_JAX_CACHE", os.path.join(REPO, ".jax_cache"))
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  from attnsep_jax.train import distributed
  if args.num_processes > 1:
    distributed.initialize(coordinator_address=args.coordinator,
                           num_processes=args.num_processes, process_id=args.process_id)
  assert jax.process_count() == args.num_processes, jax.process_count()
  assert jax.local_device_count() == args.devices, jax.local_devices()
  assert jax.device_count() == args.num_processes * args.devices, jax.devices()

  from attnsep_jax.train.loop import train_and_evaluate
  from attnsep_jax.train.synthetic import SyntheticLoader, example_tracks
  config = _config(args.steps, args.corpus)
  if args.corpus:
    loader, tracks = None, None      # the real ChunkLoader / validation tracks
  else:
    loader = SyntheticLoader(batch_size=config.data.batch_size, segment=4096, seed=3,
                             process_index=jax.process_index(),
                             process_count=jax.process_count())
    tracks = example_tracks(num_tracks=2, seconds=0.3)
  summary = train_and_evaluate(config, args.workdir, loader=loader, validation_tracks=tracks)
  print(f"process {jax.process_index()}: done at step {summary['step']}", flush=True)
  if args.num_processes > 1:
    jax.distributed.shutdown()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(num_processes: int, devices: int, workdir: str, steps: int, corpus: str | None,
            timeout: float) -> float:
  env = dict(os.environ)
  # Single-threaded XLA in every process: a float32 reduction split over a
  # thread pool sums in an order that follows the cores a process may use.
  env["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={devices} "
                      "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
  env["JAX_PLATFORMS"] = "cpu"
  coordinator = f"127.0.0.1:{_free_port()}"
  start = time.time()
  procs = []
  for pid in range(num_processes):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--workdir", workdir,
           "--steps", str(steps), "--num_processes", str(num_processes),
           "--devices", str(devices),
           "--process_id", str(pid), "--coordinator", coordinator]
    if corpus:
      cmd += ["--corpus", corpus]
    procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
  outputs, failed = [], False
  for pid, proc in enumerate(procs):
    try:
      out, _ = proc.communicate(timeout=max(1.0, timeout - (time.time() - start)))
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      out, _ = proc.communicate()
      failed = True
    outputs.append(out)
    failed |= proc.returncode != 0
  if failed:
    for pid, out in enumerate(outputs):
      print(f"----- process {pid} of {num_processes} -----\n{out[-4000:]}", file=sys.stderr)
    raise RuntimeError(f"the {num_processes}-process run failed (output above)")
  return time.time() - start


def compare(reference: str, multi: str, steps: int, corpus: str | None = None) -> dict:
  """Largest differences between the final checkpoints and logged metrics."""
  import jax
  import numpy as np
  from attnsep_jax.train.checkpoint import Checkpointer
  from attnsep_jax.train.logs import read_metrics
  from attnsep_jax.train.state import abstract_train_state
  config = _config(steps, corpus)
  abstract = abstract_train_state(config).checkpoint_tree()
  trees = []
  for workdir in (reference, multi):
    ckpt = Checkpointer(workdir, read_only=True)
    assert ckpt.latest_step() == steps, (workdir, ckpt.all_steps())
    trees.append(ckpt.restore(steps, abstract)[0])
    ckpt.close()
  result = {}
  for part in ("params", "opt_state", "ema_params"):
    leaves = zip(jax.tree.leaves(trees[0][part]), jax.tree.leaves(trees[1][part]))
    result[f"max_abs_diff_{part}"] = max(
        float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
        for a, b in leaves)
  # Some parameters have an exactly zero gradient (an attention key bias
  # shifts every logit of a query equally, so softmax ignores it).  Their
  # computed gradient is rounding noise (~1e-12), which Adam divides by a
  # second moment of the same size and turns into updates of up to ~1% of the
  # learning rate; any change of summation order moves them.  Compare the
  # parameters with a real gradient (RMS above Adam's eps) separately.
  nu = _adam_second_moment(trees[0]["opt_state"])
  determined = []
  for a, b, v in zip(jax.tree.leaves(trees[0]["params"]), jax.tree.leaves(trees[1]["params"]),
                     jax.tree.leaves(nu)):
    mask = np.sqrt(v) >= 1e-8
    if mask.any():
      determined.append(float(np.max(np.abs(a - b)[mask])))
  result["max_abs_diff_params_with_nonzero_gradient"] = max(determined)
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(trees[0]["params"]),
      jax.tree.leaves(initial_params(config))))
  result["max_param_change_from_init"] = moved
  metrics = [[e for e in read_metrics(w) if e["split"] == "train"] for w in (reference, multi)]
  assert [e["step"] for e in metrics[0]] == [e["step"] for e in metrics[1]]
  result["train_losses_reference"] = [e["loss"] for e in metrics[0]]
  result["train_losses_two_processes"] = [e["loss"] for e in metrics[1]]
  result["max_rel_diff_loss"] = max(abs(a - b) / abs(a) for a, b in zip(
      result["train_losses_reference"], result["train_losses_two_processes"]))
  valid = [[e for e in read_metrics(w) if e["split"] == "valid"] for w in (reference, multi)]
  result["valid_sdr_reference"] = valid[0][-1]["sdr"]
  result["valid_sdr_two_processes"] = valid[1][-1]["sdr"]
  result["valid_tracks_two_processes"] = valid[1][-1]["tracks"]
  return result


def _adam_second_moment(opt_state):
  """The ``nu`` tree of the (clipped) Adam state."""
  import optax
  found = []

  def visit(node):
    if isinstance(node, optax.ScaleByAdamState):
      found.append(node.nu)
    elif isinstance(node, (tuple, list)):
      for child in node:
        visit(child)
    elif hasattr(node, "inner_opt_state"):
      visit(node.inner_opt_state)
  visit(opt_state)
  return found[0]


def initial_params(config):
  """The initial parameters (the same for every run of ``config``)."""
  import jax
  import numpy as np
  from attnsep_jax.train.state import create_train_state
  return jax.tree.map(np.asarray, create_train_state(config).params)


# Equal up to float32 round-off, not bit for bit: two processes reduce the
# gradients over gloo and one process inside XLA, and the order in which a
# float32 sum is formed follows the process and thread layout (measured: 0 on
# two free cores, 6e-8 with the test pinned to one core).  A relative
# round-off of ~1e-7 in a gradient changes an Adam update of at most lr = 3e-3
# by ~1e-9 per step; parameters whose exact gradient is zero are moved by
# round-off alone (see compare()), hence the looser bound on all parameters.
TOLERANCES = {
    "max_abs_diff_params_with_nonzero_gradient": 1e-6,
    "max_abs_diff_params": 1e-5,
    "max_abs_diff_ema_params": 1e-5,
    "max_abs_diff_opt_state": 1e-8,
    "max_rel_diff_loss": 1e-6,
}


def run_check(steps: int = 3, corpus: str | None = None, workroot: str | None = None,
              timeout: float = 600.0, single_device: bool = False) -> dict:
  """Runs the reference and the 2-process training and compares them."""
  workroot = workroot or tempfile.mkdtemp(prefix="attnsep_multihost_")
  reference = os.path.join(workroot, "one_process_two_devices")
  multi = os.path.join(workroot, "two_processes")
  t_ref = _launch(1, 2, reference, steps, corpus, timeout)
  t_multi = _launch(2, 1, multi, steps, corpus, timeout)
  result = compare(reference, multi, steps, corpus)
  result.update(steps=steps, seconds_one_process=round(t_ref, 1),
                seconds_two_processes=round(t_multi, 1), workroot=workroot,
                loader="ChunkLoader" if corpus else "SyntheticLoader")
  result["ok"] = (all(result[key] <= limit for key, limit in TOLERANCES.items())
                  and result["max_param_change_from_init"] > 1e-4)
  if single_device:
    single = os.path.join(workroot, "one_process_one_device")
    _launch(1, 1, single, steps, corpus, timeout)
    result["vs_single_device"] = {k: v for k, v in compare(single, multi, steps, corpus).items()
                                  if k.startswith("max_")}
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=3, help="training steps (default 3)")
  parser.add_argument("--corpus", help="MUSDB-layout folder for the real loader "
                      "(default: in-memory synthetic batches)")
  parser.add_argument("--workroot", help="where the two workdirs go (default: a temp dir)")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--workdir", help=argparse.SUPPRESS)
  parser.add_argument("--num_processes", type=int, default=1, help=argparse.SUPPRESS)
  parser.add_argument("--process_id", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
  parser.add_argument("--single-device", action="store_true",
                      help="also compare with a 1-process, 1-device run")
  parser.add_argument("--coordinator", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    worker(args)
    return 0
  result = run_check(args.steps, args.corpus, args.workroot,
                     single_device=args.single_device)
  print(json.dumps(result, indent=2))
  print("OK: 2 processes reproduce the 1-process run to float32 round-off" if result["ok"] else
        "MISMATCH between the 1-process and the 2-process runs")
  return 0 if result["ok"] else 1


if __name__ == "__main__":
  sys.exit(main())
