"""Self-describing, verified checkpoints in ``WORKDIR/checkpoints`` (Orbax).

A checkpoint is one Orbax step directory with two items:

* ``state``: the TrainState arrays (params, optimiser state, EMA, step, RNG)
  as host numpy arrays (with several processes only process 0 writes them);
* ``meta``: JSON with the config, the data loader's position, the step, a
  checksum of ``state`` and the format version.

Orbax writes a step into ``<step>.orbax-checkpoint-tmp-*`` and renames it when
complete, so a process killed during a save leaves only a temporary directory,
which is ignored (and removed by the next run).  A checkpoint that is present
but unreadable, or whose arrays do not match the checksum written with them,
is moved to ``WORKDIR/corrupt_checkpoints/`` with a warning and the previous
one is used.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import os
import shutil
import time
import zlib
from typing import Any, Callable, NamedTuple

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from attnsep_jax import config as config_lib
from attnsep_jax.files import WriteError, free_bytes, write_error

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHECKPOINT_SUBDIR = "checkpoints"
CORRUPT_SUBDIR = "corrupt_checkpoints"
BEST_METRIC = "sdr"           # validation mean SDR (dB), higher is better
# Config sections that define what a checkpoint *is*; a run may change the
# others (train: length, logging cadence; inference: validation chunking).
IDENTITY_SECTIONS = ("seed", "model", "loss", "data", "optim")
# Fields of those sections that do not change what is computed: where the
# corpus lives (a workdir may move to another machine) and loader threading.
NON_IDENTITY_FIELDS = ("data.root", "data.num_workers", "data.prefetch_batches")


class CheckpointError(ValueError):
  """A missing, corrupt or foreign checkpoint; the message says which and why."""


class Restored(NamedTuple):
  """A verified checkpoint: its step, state tree (host arrays), meta and config."""
  step: int
  tree: Any
  meta: dict
  config: ml_collections.ConfigDict


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)


def tree_checksum(tree) -> str:
  """CRC32 over every leaf's path, dtype, shape and bytes (hex string)."""
  crc = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    leaf = np.ascontiguousarray(np.asarray(leaf))
    header = f"{jax.tree_util.keystr(path)}|{leaf.dtype.str}|{leaf.shape}"
    crc = zlib.crc32(header.encode(), crc)
    crc = zlib.crc32(leaf.view(np.uint8).reshape(-1) if leaf.size else b"", crc)
  return f"{crc:08x}"


def _json_safe(value):
  """Loader states may hold numpy scalars/arrays; JSON needs plain Python."""
  if isinstance(value, dict):
    return {str(k): _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  if isinstance(value, np.ndarray):
    return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
  if isinstance(value, np.generic):
    return value.item()
  return value


def _from_json_safe(value):
  if isinstance(value, dict):
    if set(value) == {"__ndarray__", "dtype"}:
      return np.asarray(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
    return {k: _from_json_safe(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_from_json_safe(v) for v in value]
  return value


def builder_defaults() -> dict[str, dict]:
  """Per config section, the defaults of the keyword arguments it holds.

  An option is added with a default that keeps what was computed before it
  existed, so a field missing from an older workdir's config stands for this
  default (and a field an older config file lacks, likewise).
  """
  import dataclasses
  import inspect

  from attnsep_jax import losses
  from attnsep_jax.data.loader import ChunkLoader
  from attnsep_jax.models.network import AttnSepNet
  from attnsep_jax.train.state import make_optimizer

  def of_function(fn):
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}

  model = {f.name: f.default for f in dataclasses.fields(AttnSepNet)
           if f.default is not dataclasses.MISSING and f.name not in ("parent", "name")}
  sections = {"model": model, "loss": of_function(losses.separation_loss),
              "data": of_function(ChunkLoader.__init__), "optim": of_function(make_optimizer)}
  return json.loads(json.dumps(sections))     # tuples as lists, as configs are stored


def config_differences(stored, requested, sections=IDENTITY_SECTIONS,
                       ignore=NON_IDENTITY_FIELDS) -> list[str]:
  """Dotted paths where two configs differ within ``sections`` (except ``ignore``).

  A field present in one config only is compared with its builder's default
  (``builder_defaults``): a workdir written before an option existed resumes
  with the option at its default, and is refused with any other value.
  """
  stored = json.loads(config_lib.to_json(stored))
  requested = json.loads(config_lib.to_json(requested))
  defaults = builder_defaults()
  diffs = []

  def walk(a, b, prefix, default):
    if isinstance(a, dict) and isinstance(b, dict):
      for key in sorted(set(a) | set(b)):
        fallback = default.get(key, "<absent>") if isinstance(default, dict) else "<absent>"
        walk(a.get(key, fallback), b.get(key, fallback), f"{prefix}{key}.", fallback)
    elif a != b and prefix[:-1] not in ignore:
      diffs.append(f"{prefix[:-1]}: {a!r} in the workdir, {b!r} requested")

  for section in sections:
    walk(stored.get(section, "<absent>"), requested.get(section, "<absent>"), f"{section}.",
         defaults.get(section, {}))
  return diffs


class Checkpointer:
  """Saves and restores TrainState checkpoints of one workdir.

  Keeps the latest ``keep`` checkpoints plus the best one by validation SDR
  (checkpoints saved with ``metrics={"sdr": ...}``).  Every process must make
  the same calls (Orbax synchronises them).
  """

  def __init__(self, workdir: str, keep: int = 3, keep_best: int = 1,
               async_save: bool = True, read_only: bool = False):
    """Opens (creating unless read_only) ``workdir/checkpoints``.

    Args:
      workdir: the training run's directory.
      keep: how many of the most recent checkpoints to keep.
      keep_best: how many of the best-by-SDR checkpoints to keep as well.
      async_save: write in a background thread while training continues.
      read_only: never write or delete (for export/evaluation).
    """
    self.workdir = os.path.abspath(workdir)
    self.directory = checkpoint_dir(workdir)
    if read_only and not os.path.isdir(self.directory):
      raise CheckpointError(f"no checkpoints in {self.workdir} (missing {self.directory})")
    policy = ocp.checkpoint_managers.AnyPreservationPolicy([
        ocp.checkpoint_managers.LatestN(n=max(1, keep)),
        ocp.checkpoint_managers.BestN(get_metric_fn=_best_metric, n=keep_best,
                                      keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        best_fn=_best_metric, best_mode="max", preservation_policy=policy,
        create=not read_only, read_only=read_only,
        # A save interrupted by a kill leaves a temporary directory behind.
        cleanup_tmp_directories=not read_only,
        enable_async_checkpointing=async_save)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "meta"))
    self._pending = None   # (step, bytes) of the save in flight
    self.errors = []       # why restore_good skipped checkpoints

  # -- queries ---------------------------------------------------------------
  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def best_step(self) -> int | None:
    """Step with the highest validation SDR (None if none was evaluated)."""
    steps = [s for s in self.all_steps() if self.manager.metrics(s) is not None]
    return self.manager.best_step() if steps else None

  # -- save ------------------------------------------------------------------
  def save(self, step: int, state_tree, config, loader_state: Any = None,
           metrics: dict | None = None, pending: dict | None = None,
           train_seconds: float | None = None) -> bool:
    """Saves a checkpoint (asynchronously); returns False if ``step`` exists.

    Args:
      step: the training step the state has completed.
      state_tree: ``TrainState.checkpoint_tree()`` as host numpy arrays.
      config: the run's ConfigDict, stored as JSON.
      loader_state: the data loader's ``state_dict()`` after ``step`` batches.
      metrics: validation metrics (``{"sdr": mean dB, ...}``) for best-keeping.
      pending: the loop's partial logging window (sums and count), so that a
        resumed run logs the same averages as an uninterrupted one.
      train_seconds: training time spent up to ``step`` over every run of
        this workdir (validation excluded), for ``train.time_budget_seconds``.
    """
    self.wait()   # a failure of the previous save is reported as its own
    if step in self.manager.all_steps():
      return False
    state_tree = jax.tree.map(np.asarray, state_tree)
    meta = {"format_version": FORMAT_VERSION, "step": int(step),
            "config": json.loads(config_lib.to_json(config)),
            "loader": _json_safe(loader_state),
            "checksum": tree_checksum(state_tree),
            "metrics": _json_safe(metrics) if metrics else None,
            "pending_metrics": _json_safe(pending),
            "train_seconds": train_seconds,
            "time": time.time()}
    self._pending = (int(step), sum(np.asarray(x).nbytes for x in jax.tree.leaves(state_tree)))
    self._check_space(*self._pending)
    try:
      saved = self.manager.save(
          step, args=ocp.args.Composite(state=ocp.args.StandardSave(state_tree),
                                        meta=ocp.args.JsonSave(meta)),
          metrics=_json_safe(metrics) if metrics else None, force=True)
    except Exception as e:  # Orbax and TensorStore raise many types
      raise self._write_failed(e) from e
    return bool(saved)

  def wait(self):
    """Waits for the asynchronous save; a failed one raises WriteError."""
    try:
      self.manager.wait_until_finished()
    except Exception as e:
      raise self._write_failed(e) from e
    self._pending = None

  def close(self):
    try:
      self.wait()
    finally:
      self.manager.close()

  def _check_space(self, step: int, needed_bytes: int) -> None:
    """Refuses a save that cannot fit before anything is written: a save that
    fills the disk midway leaves TensorStore printing a traceback per array."""
    free = free_bytes(self.directory)
    if jax.process_index() == 0 and free is not None and free < needed_bytes:
      full = OSError(errno.ENOSPC, "No space left on device")
      raise self._write_failed(full) from None

  def _write_failed(self, error: Exception) -> WriteError:
    """Removes what the failed save left and says, in one line, what is intact."""
    step, needed_bytes = self._pending or (None, None)
    self._pending = None
    for leftover in glob.glob(os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*")):
      shutil.rmtree(leftover, ignore_errors=True)
    if step is not None and os.path.isdir(self._path(step)):
      shutil.rmtree(self._path(step), ignore_errors=True)   # never verified: unusable
    with contextlib.suppress(Exception):
      self.manager.reload()
    intact = [s for s in self.all_steps() if s != step]
    return write_error(
        error, f"the checkpoint of step {step}", self.directory, needed_bytes,
        intact=_intact(intact),
        resume=("free some space and run the same command again: training resumes from "
                f"step {intact[-1] if intact else 0}"))

  # -- restore ---------------------------------------------------------------
  def read_meta(self, step: int) -> dict:
    """The JSON item of a checkpoint (config, loader state, checksum)."""
    try:
      meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # Orbax raises many types for unreadable files
      raise CheckpointError(
          f"checkpoint {self._path(step)} is unreadable ({type(e).__name__}: "
          f"{_first_line(e)})") from e
    if not isinstance(meta, dict) or "config" not in meta or "checksum" not in meta:
      raise CheckpointError(f"checkpoint {self._path(step)} has no valid metadata")
    meta["loader"] = _from_json_safe(meta.get("loader"))
    return meta

  def restore(self, step: int, abstract_tree, meta: dict | None = None) -> tuple[Any, dict]:
    """Restores and verifies one checkpoint.

    Args:
      step: which checkpoint.
      abstract_tree: the state tree's structure (ShapeDtypeStructs or arrays);
        optimiser states come back as their own types.
      meta: its metadata when already read (``read_meta``).
    Returns:
      (state tree of host numpy arrays, meta dict).
    Raises:
      CheckpointError: unreadable, wrong shapes, or checksum mismatch.
    """
    meta = meta if meta is not None else self.read_meta(step)
    target = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), abstract_tree)
    try:
      tree = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target)))["state"]
    except Exception as e:
      raise CheckpointError(
          f"checkpoint {self._path(step)} is unreadable ({type(e).__name__}: "
          f"{_first_line(e)})") from e
    tree = jax.tree.map(np.asarray, tree)
    shapes = [(np.shape(a), np.shape(b)) for a, b in
              zip(jax.tree.leaves(tree), jax.tree.leaves(target))]
    if jax.tree.structure(tree) != jax.tree.structure(target) or any(a != b for a, b in shapes):
      raise CheckpointError(f"checkpoint {self._path(step)} does not match the "
                            "model/optimiser of its own config")
    checksum = tree_checksum(tree)
    if checksum != meta["checksum"]:
      raise CheckpointError(
          f"checkpoint {self._path(step)} is corrupt: its arrays' checksum "
          f"{checksum} differs from the {meta['checksum']} written with them")
    return tree, meta

  def restore_good(self, abstract_fn: Callable[[ml_collections.ConfigDict], Any], *,
                   step: int | None = None, prefer_best: bool = False,
                   quarantine: bool = True,
                   check_config: Callable[[ml_collections.ConfigDict, int], None] | None = None
                   ) -> Restored | None:
    """The newest (or best) checkpoint that restores and verifies: the one
    routine training, export, separation and the ablation tool share.

    Candidates are tried in order -- ``step`` alone when given; else the best
    by validation SDR first when ``prefer_best``, then newest to oldest -- and
    each one's metadata is read once.

    Args:
      abstract_fn: stored config -> abstract state tree (built from the
        checkpoint's own config, so that a foreign checkpoint fails cleanly).
      step: restore exactly this step (CheckpointError if it is not usable).
      prefer_best: try the best checkpoint by validation SDR first.
      quarantine: move bad checkpoints to ``WORKDIR/corrupt_checkpoints`` so
        that later saves at their step numbers do not collide with them
        (training); False leaves the workdir untouched (readers).
      check_config: called with (stored config, step) before restoring; may
        raise to refuse the workdir (errors other than CheckpointError pass).
    Returns:
      Restored(step, tree, meta, config), or None when no checkpoint is usable.
    Raises:
      CheckpointError: ``step`` was given and is missing or unusable.
    """
    steps = self.all_steps()
    if step is not None:
      if step not in steps:
        raise CheckpointError(f"no checkpoint for step {step} in {self.directory}; "
                              f"available: {steps}")
      candidates = [step]
    else:
      best = self.best_step() if prefer_best else None
      candidates = [best] if best is not None else []
      candidates += [s for s in sorted(steps, reverse=True) if s != best]
    self.errors = []
    for candidate in candidates:
      try:
        meta = self.read_meta(candidate)
        config = config_lib.from_json(json.dumps(meta["config"]))
      except CheckpointError as e:
        self._skip(candidate, e, quarantine, raise_it=step is not None)
        continue
      if check_config is not None:   # a refusal is not a bad checkpoint: it propagates
        check_config(config, candidate)
      try:
        tree, meta = self.restore(candidate, abstract_fn(config), meta)
      except CheckpointError as e:
        self._skip(candidate, e, quarantine, raise_it=step is not None)
        continue
      return Restored(candidate, tree, meta, config)
    return None

  def _skip(self, step: int, error: CheckpointError, quarantine: bool, raise_it: bool):
    if raise_it:
      raise error
    self.errors.append(str(error))
    log.warning("%s; falling back to the previous checkpoint", error)
    if quarantine:
      print(f"WARNING: {error}; falling back to the previous checkpoint", flush=True)
      self._quarantine(step)

  def _quarantine(self, step: int):
    from attnsep_jax.train import distributed  # avoid an import cycle at load time
    if jax.process_index() == 0:
      target = os.path.join(self.workdir, CORRUPT_SUBDIR, f"{step}-{int(time.time())}")
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.move(self._path(step), target)
      print(f"moved the bad checkpoint to {target}", flush=True)
    distributed.sync(f"quarantine_{step}")
    self.manager.reload()

  def _path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))


def _intact(steps: list[int]) -> str:
  if not steps:
    return "no earlier checkpoint exists"
  if len(steps) == 1:
    return f"the checkpoint of step {steps[0]} is intact"
  return f"the checkpoints of steps {', '.join(map(str, steps))} are intact"


class _OrbaxErrorFilter(logging.Filter):
  """Drops Orbax's own error logs (tracebacks from its save threads): the
  failure they report reaches ``Checkpointer.wait``/``save``, which raise it
  as one line."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname)


_ORBAX_FILTER = _OrbaxErrorFilter()
logging.getLogger("absl").addFilter(_ORBAX_FILTER)


def _best_metric(metrics) -> float:
  value = metrics.get(BEST_METRIC) if isinstance(metrics, dict) else None
  return float(value) if value is not None and np.isfinite(value) else -np.inf


def _first_line(error: Exception) -> str:
  text = str(error).strip().splitlines()
  return text[0][:300] if text else repr(error)


class InferenceParams(NamedTuple):
  """What inference needs from a training checkpoint, and which step it was."""
  config: ml_collections.ConfigDict
  params: Any
  step: int


def restore_inference_params(workdir: str, step: int | None = None) -> InferenceParams:
  """The config and inference parameters stored in a training workdir.

  Args:
    workdir: a directory written by ``train.py`` (or its ``checkpoints``
      subdirectory).
    step: which checkpoint; None picks the best by validation SDR, else the
      latest, skipping (not moving) unreadable ones.
  Returns:
    InferenceParams(config stored in the checkpoint, EMA params if the run
    kept an EMA else params, the checkpoint's step), the params as a pytree
    of host numpy arrays.
  Raises:
    CheckpointError: missing/empty workdir, missing step, corrupt checkpoint.
  """
  from attnsep_jax.train.state import abstract_train_state

  workdir = os.path.abspath(workdir)
  if not os.path.isdir(workdir):
    raise CheckpointError(f"workdir {workdir} does not exist")
  if (os.path.basename(workdir) == CHECKPOINT_SUBDIR
      and not os.path.isdir(checkpoint_dir(workdir))):
    workdir = os.path.dirname(workdir)
  ckpt = Checkpointer(workdir, read_only=True)
  try:
    if not ckpt.all_steps():
      raise CheckpointError(f"no checkpoints in {ckpt.directory}")
    restored = ckpt.restore_good(lambda c: abstract_train_state(c).checkpoint_tree(),
                                 step=step, prefer_best=True, quarantine=False)
    if restored is None:
      raise CheckpointError("no usable checkpoint: " + "; ".join(ckpt.errors))
    tree = restored.tree
    params = tree["ema_params"] if tree["ema_params"] is not None else tree["params"]
    return InferenceParams(restored.config, params, restored.step)
  finally:
    ckpt.manager.close()
