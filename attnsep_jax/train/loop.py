"""``train_and_evaluate(config, workdir)``: the training loop.

Resumes from the newest good checkpoint in ``workdir`` (refusing a workdir
written for a different model/loss/data/optimiser), trains to
``config.train.num_steps`` with the pmapped pure step, validates on whole
tracks every ``eval_every_steps``, checkpoints every ``checkpoint_every_steps``
(and after each validation and at the end), and logs.  Everything that decides
what step i computes -- parameters, optimiser state, the RNG (folded from the
seed and i), the data loader's position, even the partial sums of the current
logging window -- is in the checkpoint, so a resumed run repeats exactly what
the uninterrupted one would have done.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import warnings
from typing import Callable, Iterable

import jax
import numpy as np

from attnsep_jax import config as config_lib
from attnsep_jax.bsseval import bss_eval_v4
from attnsep_jax.inference import separate
from attnsep_jax.losses import per_source_loss
from attnsep_jax.metrics import utterance_sdr
from attnsep_jax.models.network import build_model, count_params
from attnsep_jax.train import distributed
from attnsep_jax.train.checkpoint import (CheckpointError, Checkpointer, config_differences)
from attnsep_jax.train.logs import MetricWriter, plot_curves
from attnsep_jax.train.state import TrainState, abstract_train_state, create_train_state
from attnsep_jax.train.step import source_names


CONFIG_FILE = "config.json"


class TrainingDivergedError(RuntimeError):
  """The loss or the gradient became NaN/Inf; training stopped without saving."""


class WorkdirConfigError(CheckpointError):
  """The workdir holds a run of a different experiment."""


# -----------------------------------------------------------------------------
# Data
# -----------------------------------------------------------------------------
def make_loader(config):
  """The training chunk loader for this process's shard of the global batch."""
  from attnsep_jax.data.loader import ChunkLoader
  return ChunkLoader(**config.data, process_index=jax.process_index(),
                     process_count=jax.process_count())


def make_validation_tracks(config) -> Callable[[], Iterable]:
  """A function returning an iterator of (name, mixture (T, C), sources (S, T, C))."""
  from attnsep_jax.data import loader as loader_lib
  return lambda: loader_lib.validation_tracks(**_validation_kwargs(config))


def _validation_kwargs(config) -> dict:
  data = dict(config.data)
  return {k: data[k] for k in ("root", "is_wav", "sample_rate") if k in data}


# -----------------------------------------------------------------------------
# Validation
# -----------------------------------------------------------------------------
def _bss_sdr(sources: np.ndarray, estimate: np.ndarray, sample_rate: int) -> np.ndarray:
  """(S,) BSS Eval v4 SDR per source, median over 1 s windows (NaN: undefined)."""
  try:
    sdr = bss_eval_v4(sources, estimate, window_samples=int(sample_rate)).sdr
  except ValueError:   # a silent stem: BSS Eval is undefined on this track
    return np.full(len(sources), np.nan)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)   # every window silent: NaN
    return np.nanmedian(sdr, axis=1)


def validate(model, params, tracks: Iterable, config) -> dict:
  """Separates whole validation tracks and averages SDR and loss over them.

  Each process separates every ``process_count``-th track; the per-track
  results are then gathered, so all processes return the same numbers, and
  the same as one process would.

  Args:
    model: the network.
    params: host parameters (the EMA ones when there are).
    tracks: iterable of (name, mixture (T, C), sources (S, T, C)).
    config: the experiment config (inference, loss, data.sample_rate).
  Returns:
    {"sdr": mean over sources, "sdr_<source>": ..., "loss": ..., "tracks": n};
    "sdr" is the utterance SDR (uSDR); "bss_sdr" and "bss_sdr_<source>" are
    BSS Eval v4 SDR (median over 1 s windows, mean over the tracks where it
    is defined).
  """
  names = source_names(model.num_sources)
  loss_kwargs = {k: v for k, v in dict(config.loss).items()
                 if k not in ("source_weights", "l1_warmup_steps")}
  weights = np.asarray(config.loss.source_weights, np.float64)
  rows = []   # per track: uSDR, loss, BSS SDR per source (zeros: another process's)
  for index, track in enumerate(tracks):
    row = np.zeros(3 * len(names), np.float32)
    if index % jax.process_count() == jax.process_index():
      _, mixture, sources = track
      estimate = separate(model, params, np.asarray(mixture, np.float32),
                          sample_rate=config.data.sample_rate, **config.inference)
      sources = np.asarray(sources, np.float32)
      row[:len(names)] = np.asarray(utterance_sdr(sources, estimate))
      row[len(names):2 * len(names)] = np.asarray(per_source_loss(
          sources[None], estimate[None], **loss_kwargs))
      row[2 * len(names):] = _bss_sdr(sources, estimate, config.data.sample_rate)
    rows.append(row)
  if not rows:
    return {}
  # Every track's row comes from exactly one process (the others add zeros,
  # which is exact), and the mean over tracks is then taken in track order:
  # the numbers do not depend on how many processes shared the work.
  rows = distributed.sum_across_processes(np.stack(rows)).astype(np.float64)
  count = len(rows)
  sdr, loss = rows[:, :len(names)].mean(axis=0), rows[:, len(names):2 * len(names)].mean(axis=0)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)   # undefined on every track: NaN
    bss = np.nanmean(rows[:, 2 * len(names):], axis=0)
  metrics = {"sdr": float(sdr.mean()), "loss": float(np.sum(loss * weights) / weights.sum()),
             "bss_sdr": float(bss.mean()), "tracks": float(count)}
  for name, s, l, b in zip(names, sdr, loss, bss):
    metrics[f"sdr_{name}"] = float(s)
    metrics[f"loss_{name}"] = float(l)
    metrics[f"bss_sdr_{name}"] = float(b)
  return metrics


# -----------------------------------------------------------------------------
# Workdir / resume
# -----------------------------------------------------------------------------
def _refuse_foreign(stored, config, where: str):
  diffs = config_differences(stored, config)
  if diffs:
    raise WorkdirConfigError(
        f"{where} belongs to a different experiment; refusing to train into it "
        "(use a new --workdir, or the workdir's own config to resume).  "
        "Differences: " + "; ".join(diffs[:10]) + (" ..." if len(diffs) > 10 else ""))


def restore_or_create(config, workdir: str, ckpt: Checkpointer, model):
  """The TrainState to start from and the checkpoint meta (None when fresh).

  Raises:
    WorkdirConfigError: the workdir's checkpoints or config.json come from a
      different experiment (compared on seed/model/loss/data/optim).
  """
  abstract = abstract_train_state(config, model)

  for step in sorted(ckpt.all_steps(), reverse=True):
    try:
      meta = ckpt.read_meta(step)
    except CheckpointError as e:
      print(f"WARNING: {e}; trying the previous checkpoint", flush=True)
      ckpt._quarantine(step)   # pylint: disable=protected-access
      continue
    _refuse_foreign(config_lib.from_json(json.dumps(meta["config"])), config,
                    f"workdir {workdir} (checkpoint {step})")
    break
  restored = ckpt.restore_latest_good(lambda _: abstract.checkpoint_tree())
  if restored is not None:
    step, tree, meta = restored
    return abstract.with_checkpoint_tree(tree), meta
  check_workdir_config(workdir, config)
  return create_train_state(config, model), None


def check_workdir_config(workdir: str, config) -> None:
  """Raises WorkdirConfigError if ``workdir/config.json`` is another experiment's."""
  config_path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(config_path):
    with open(config_path) as f:
      _refuse_foreign(config_lib.from_json(f.read()), config, f"workdir {workdir}")


def _write_config(workdir: str, config):
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, CONFIG_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(config_lib.to_json(config))
  os.replace(tmp, path)


# -----------------------------------------------------------------------------
# Progress
# -----------------------------------------------------------------------------
class Progress:
  """A tqdm bar on a terminal; plain lines (for log files) otherwise."""

  def __init__(self, start: int, total: int, enabled: bool, every: int):
    self.enabled, self.every, self.total = enabled, max(1, every), total
    self.bar = None
    self._t0, self._s0 = time.time(), start
    if enabled and sys.stderr.isatty():
      from tqdm import tqdm
      self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                      smoothing=0.1)

  def update(self, step: int, loss: float, steps_per_sec: float | None):
    if not self.enabled:
      return
    if self.bar is not None:
      self.bar.update(step - self.bar.n)
      postfix = {"loss": f"{loss:.4f}"}
      if steps_per_sec:
        postfix["steps/s"] = f"{steps_per_sec:.2f}"
      self.bar.set_postfix(postfix, refresh=False)
    elif step % self.every == 0 or step == self.total:
      eta = ""
      if steps_per_sec:
        eta = time.strftime("%H:%M:%S", time.gmtime((self.total - step) / steps_per_sec))
        eta = f"  {steps_per_sec:.2f} steps/s  ETA {eta}"
      print(f"step {step}/{self.total}  loss {loss:.4f}{eta}", flush=True)

  def write(self, text: str):
    if not self.enabled:
      return
    if self.bar is not None:
      self.bar.write(text)
    else:
      print(text, flush=True)

  def close(self):
    if self.bar is not None:
      self.bar.close()


class _StopRequest:
  """SIGTERM/SIGINT -> checkpoint at the next step boundary, then exit.

  Only with one process: several processes would have to agree on the step.
  """

  def __init__(self):
    self.requested = False
    self._previous = {}
    if jax.process_count() == 1:
      for sig in (signal.SIGTERM, signal.SIGINT):
        try:
          self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:   # not the main thread (e.g. under some test runners)
          pass

  def _handle(self, signum, frame):
    if self.requested:   # a second signal: give up at once
      raise KeyboardInterrupt
    self.requested = True

  def restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


# -----------------------------------------------------------------------------
# The loop
# -----------------------------------------------------------------------------
@jax.jit
def _step_rng(base, step):
  return jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(base), step))


def train_and_evaluate(config, workdir: str, *, loader=None,
                       validation_tracks: Callable[[], Iterable] | None = None) -> dict:
  """Trains (or resumes training) to ``config.train.num_steps``, or until
  ``config.train.time_budget_seconds`` of training time are spent.

  Args:
    config: the experiment ConfigDict (configs/*.py).
    workdir: directory for checkpoints, config.json, metrics, TensorBoard, plot.
    loader: the training batch source (default: ``ChunkLoader(**config.data)``
      for this process); must iterate dict batches and have
      ``state_dict()``/``load_state_dict()``.
    validation_tracks: function returning an iterable of (name, mixture,
      sources) whole tracks (default: the corpus's validation tracks).
  Returns:
    a summary: step, last train and validation metrics, best step, timings.
  Raises:
    WorkdirConfigError: ``workdir`` holds a different experiment.
    TrainingDivergedError: a NaN/Inf loss or gradient (nothing is saved).
  """
  train_cfg = config.train
  workdir = os.path.abspath(workdir)
  num_steps = int(train_cfg.num_steps)
  distributed.check_batch_size(config.data.batch_size)
  is_main = jax.process_index() == 0
  if is_main:
    os.makedirs(workdir, exist_ok=True)
  distributed.sync("workdir")

  model = build_model(config.model)
  ckpt = Checkpointer(workdir, keep=train_cfg.keep_checkpoints)
  state, meta = restore_or_create(config, workdir, ckpt, model)
  start_step = int(state.step)

  budget_seconds = train_cfg.get("time_budget_seconds")
  spent_seconds = float((meta or {}).get("train_seconds") or 0.0)
  summary = {"start_step": start_step, "step": start_step, "train": None, "valid": None,
             "train_seconds": spent_seconds}
  if start_step >= num_steps or (budget_seconds and spent_seconds >= budget_seconds):
    if start_step >= num_steps:
      print(f"already trained to step {start_step} >= train.num_steps={num_steps}; "
            "raise --config.train.num_steps to continue", flush=True)
    else:
      print(f"the time budget of {budget_seconds:g} s was spent at step {start_step}; "
            "raise --config.train.time_budget_seconds to continue", flush=True)
    summary["best_step"] = ckpt.best_step()
    ckpt.close()
    return summary

  own_loader = loader is None
  if own_loader:
    loader = make_loader(config)
  if validation_tracks is None and train_cfg.eval_every_steps:
    validation_tracks = make_validation_tracks(config)
  pending = {"sums": {}, "count": 0}
  if meta is not None:
    loader.load_state_dict(meta["loader"])
    pending = meta.get("pending_metrics") or pending
    print(f"resumed from step {start_step} ({ckpt.directory})", flush=True)
  elif is_main:
    print(f"training from scratch: {count_params(state.params):,} parameters, "
          f"{jax.device_count()} devices on {jax.process_count()} processes", flush=True)
  # Written once the loader has accepted the config, so that a run that
  # failed on, say, a wrong data path does not claim the workdir.
  _write_config(workdir, config)
  writer = MetricWriter(workdir, enabled=is_main, resume_step=start_step)

  p_train_step = distributed.pmap_train_step()
  num_local = jax.local_device_count()
  base_rng = np.asarray(state.rng)
  replicated = distributed.replicate(state)
  static = state   # keeps the static fields to rebuild host states
  del state

  def host_state() -> TrainState:
    return static.with_checkpoint_tree(distributed.unreplicate(replicated.checkpoint_tree()))

  clock = {"start": time.time(), "excluded": 0.0}

  def training_seconds() -> float:
    """Training time over every run of this workdir, validation excluded."""
    return spent_seconds + time.time() - clock["start"] - clock["excluded"]

  def out_of_time() -> bool:
    if not budget_seconds:
      return False
    late = np.asarray(training_seconds() >= budget_seconds, np.int32)
    if jax.process_count() > 1:   # every process must stop at the same step
      late = distributed.broadcast_from_first(late)
    return bool(late)

  def save(step: int, metrics: dict | None = None):
    tree = distributed.unreplicate(replicated.checkpoint_tree())
    ckpt.save(step, tree, config, loader_state=loader.state_dict(), metrics=metrics,
              pending=pending, train_seconds=training_seconds())

  progress = Progress(start_step, num_steps, is_main, train_cfg.log_every_steps)
  stopper = _StopRequest()
  batches = iter(loader)
  in_flight = None              # (step, device metrics) not yet read back
  timing = {"window_start": time.time(), "window_steps": 0, "first_step_s": None}
  steps_per_sec = None
  step = start_step

  def read_back(done_step: int, device_metrics) -> dict:
    """Host side of a finished step: NaN check, window sums, progress."""
    nonlocal steps_per_sec
    host = {k: float(v[0]) for k, v in jax.device_get(device_metrics).items()}
    if host.pop("finite") < 1.0:
      raise TrainingDivergedError(
          f"non-finite loss or gradient at step {done_step} (loss={host['loss']}, "
          f"grad_norm={host['grad_norm']}); training stopped.  That step did not "
          f"update the parameters and nothing was saved after it: the last good "
          f"checkpoint (step {ckpt.latest_step()}) is intact.  Lower "
          "optim.learning_rate or check the data for NaN/Inf.")
    for key, value in host.items():
      pending["sums"][key] = pending["sums"].get(key, 0.0) + value
    pending["count"] += 1
    if timing["first_step_s"] is None:
      timing["first_step_s"] = time.time() - timing["window_start"]
      timing["window_start"], timing["window_steps"] = time.time(), 0
    else:
      timing["window_steps"] += 1
      elapsed = time.time() - timing["window_start"]
      steps_per_sec = timing["window_steps"] / elapsed if elapsed > 0 else None
    progress.update(done_step, host["loss"], steps_per_sec)
    return host

  try:
    while step < num_steps:
      batch = distributed.shard_batch(next(batches), num_local)
      rng = _step_rng(base_rng, step)
      replicated, device_metrics = p_train_step(replicated, batch, rng)
      previous, in_flight = in_flight, (step + 1, device_metrics)
      # Reading the previous step's metrics after dispatching this one keeps
      # the device busy while the host looks at them.
      if previous is not None:
        read_back(*previous)
      step += 1

      # Checked on logging steps only: with several processes it is a collective.
      time_is_up = step % train_cfg.log_every_steps == 0 and out_of_time()
      is_last = step == num_steps or time_is_up
      log_now = step % train_cfg.log_every_steps == 0 or is_last
      eval_now = bool(train_cfg.eval_every_steps) and (
          step % train_cfg.eval_every_steps == 0 or is_last)
      save_now = (step % train_cfg.checkpoint_every_steps == 0 or is_last or eval_now
                  or stopper.requested)
      if not (log_now or eval_now or save_now):
        continue
      read_back(*in_flight)
      in_flight = None
      if log_now and pending["count"]:
        means = {k: v / pending["count"] for k, v in pending["sums"].items()}
        if steps_per_sec:
          means["steps_per_sec"] = steps_per_sec
        writer.write("train", step, means)
        summary["train"] = means
        pending = {"sums": {}, "count": 0}
      valid = None
      if eval_now:
        trained_seconds = training_seconds()   # the x axis of curves over time
        t0 = time.time()
        params = host_state()
        params = params.ema_params if params.ema_params is not None else params.params
        valid = validate(model, params, validation_tracks(), config)
        if valid:
          valid["seconds"] = time.time() - t0
          valid["train_seconds"] = trained_seconds
          writer.write("valid", step, valid)
          summary["valid"] = valid
          progress.write(
              f"step {step}: validation SDR {valid['sdr']:.2f} dB ("
              + ", ".join(f"{n} {valid[f'sdr_{n}']:.2f}" for n in source_names(model.num_sources))
              + f"), BSS Eval SDR {valid['bss_sdr']:.2f} dB, loss {valid['loss']:.4f}, "
              f"{valid['seconds']:.0f} s")
        # Validation time is not training time.
        clock["excluded"] += time.time() - t0
        timing["window_start"], timing["window_steps"] = time.time(), 0
      if save_now:
        save(step, {"sdr": valid["sdr"]} if valid else None)
      writer.flush()
      if time_is_up:
        progress.write(f"time budget of {budget_seconds:g} s spent at step {step}; "
                       "checkpoint saved")
        break
      if stopper.requested and not is_last:
        progress.write(f"stopped by signal at step {step}; checkpoint saved, "
                       "run the same command again to resume")
        break
  finally:
    stopper.restore()
    progress.close()
    if own_loader and hasattr(loader, "close"):
      loader.close()   # its prefetch threads
    ckpt.wait()   # the last asynchronous save
    summary["best_step"] = ckpt.best_step()
    ckpt.close()
    writer.close()

  summary.update(step=step, train_seconds=training_seconds(),
                 first_step_seconds=timing["first_step_s"], steps_per_sec=steps_per_sec)
  if is_main:
    summary["plot"] = plot_curves(workdir)
  return summary
