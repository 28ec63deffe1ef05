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

import os
import signal
import time
from typing import Callable, Iterable

import jax
import numpy as np

from attnsep_jax import config as config_lib
from attnsep_jax import files
from attnsep_jax.models.network import build_model, count_params
from attnsep_jax.train import distributed
from attnsep_jax.train.bag import bag_size, train_bag
from attnsep_jax.train.checkpoint import CheckpointError, Checkpointer, config_differences
from attnsep_jax.train.clock import Clock, itstime
from attnsep_jax.train.logs import MetricWriter, plot_curves
from attnsep_jax.train.progress import Progress, StepMetrics, TrainingDivergedError
from attnsep_jax.train.state import abstract_train_state, create_train_state
from attnsep_jax.train.step import source_names
from attnsep_jax.train.validation import validate

__all__ = ["train_and_evaluate", "TrainingDivergedError", "WorkdirConfigError",
           "check_workdir_config", "write_config"]

CONFIG_FILE = "config.json"


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
  data = dict(config.data)
  kwargs = {k: data[k] for k in ("root", "is_wav", "sample_rate") if k in data}
  return lambda: loader_lib.validation_tracks(**kwargs)


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
  refuse = lambda stored, step: _refuse_foreign(stored, config,
                                                f"workdir {workdir} (checkpoint {step})")
  restored = ckpt.restore_good(lambda _: abstract.checkpoint_tree(), check_config=refuse)
  if restored is not None:
    return abstract.with_checkpoint_tree(restored.tree), restored.meta
  check_workdir_config(workdir, config)
  return create_train_state(config, model), None


def check_workdir_config(workdir: str, config) -> None:
  """Raises WorkdirConfigError if ``workdir/config.json`` is another experiment's."""
  config_path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(config_path):
    with open(config_path) as f:
      stored = config_lib.from_json(f.read())
    _refuse_foreign(stored, config, f"workdir {workdir}")
    if bag_size(stored) != bag_size(config):
      raise WorkdirConfigError(
          f"workdir {workdir} holds a bag of {bag_size(stored)} model(s), not "
          f"{bag_size(config)} (train.bag_size); use a new --workdir")


def write_config(workdir: str, config):
  if jax.process_index() == 0:
    files.write_text(os.path.join(workdir, CONFIG_FILE), config_lib.to_json(config),
                     "the run's config")


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

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


# -----------------------------------------------------------------------------
# The loop
# -----------------------------------------------------------------------------
@jax.jit
def _step_rng(base, step):
  return jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(base), step))


def _finished(start_step: int, num_steps: int, clock: Clock) -> bool:
  if start_step >= num_steps:
    print(f"already trained to step {start_step} >= train.num_steps={num_steps}; "
          "raise --config.train.num_steps to continue", flush=True)
  elif clock.budget_seconds and clock.spent_seconds >= clock.budget_seconds:
    print(f"the time budget of {clock.budget_seconds:g} s was spent at step {start_step}; "
          "raise --config.train.time_budget_seconds to continue", flush=True)
  else:
    return False
  return True


def _report_validation(progress: Progress, step: int, valid: dict, num_sources: int):
  per_source = ", ".join(f"{n} {valid[f'sdr_{n}']:.2f}" for n in source_names(num_sources))
  progress.write(f"step {step}: validation SDR {valid['sdr']:.2f} dB ({per_source}), "
                 f"BSS Eval SDR {valid['bss_sdr']:.2f} dB, loss {valid['loss']:.4f}, "
                 f"{valid['seconds']:.0f} s")


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
    WriteError: a checkpoint could not be written (a full disk); earlier ones are intact.
  """
  if bag_size(config) > 1:
    return train_bag(config, workdir, loader=loader, validation_tracks=validation_tracks)
  cfg, workdir = config.train, os.path.abspath(workdir)
  num_steps, is_main = int(cfg.num_steps), jax.process_index() == 0
  distributed.check_batch_size(config.data.batch_size)
  if is_main:
    os.makedirs(workdir, exist_ok=True)
  distributed.sync("workdir")
  model = build_model(config.model)
  ckpt = Checkpointer(workdir, keep=cfg.keep_checkpoints)
  state, meta = restore_or_create(config, workdir, ckpt, model)
  start_step = int(state.step)
  clock = Clock((meta or {}).get("train_seconds"), cfg.get("time_budget_seconds"))
  summary = {"start_step": start_step, "step": start_step, "train": None, "valid": None,
             "train_seconds": clock.spent_seconds}
  if _finished(start_step, num_steps, clock):
    summary["best_step"] = ckpt.best_step()
    ckpt.close()
    return summary

  own_loader = loader is None
  loader = _start_loader(config, workdir, loader, meta, state, ckpt)
  validation_tracks = validation_tracks or make_validation_tracks(config)
  writer = MetricWriter(workdir, enabled=is_main, resume_step=start_step)
  progress = Progress(start_step, num_steps, is_main, cfg.log_every_steps)
  metrics = StepMetrics((meta or {}).get("pending_metrics"), progress, ckpt.latest_step)
  p_train_step, num_local = distributed.pmap_train_step(), jax.local_device_count()
  base_rng, replicated = np.asarray(state.rng), distributed.replicate(state)
  host_state = lambda: state.with_checkpoint_tree(
      distributed.unreplicate(replicated.checkpoint_tree()))
  batches, step = iter(loader), start_step
  time_fraction = clock.budget_fraction()
  if state.decays_with_time and not clock.budget_seconds and is_main:
    print("optim.decay_clock='time' without train.time_budget_seconds: the "
          "learning-rate cosine follows train.num_steps", flush=True)
  try:
    with _StopRequest() as stopper:
      for step in range(start_step + 1, num_steps + 1):
        batch = distributed.shard_batch(next(batches), num_local)
        if state.decays_with_time:
          batch["time_fraction"] = np.full((num_local,), time_fraction, np.float32)
        replicated, step_metrics = p_train_step(replicated, batch, _step_rng(base_rng, step - 1))
        metrics.record(step, step_metrics)
        # Measured on logging steps only: with several processes it is a collective.
        if itstime(step, cfg.log_every_steps):
          time_fraction = clock.budget_fraction()
        out_of_time = time_fraction >= 1.0
        end = step == num_steps or out_of_time
        if itstime(step, cfg.log_every_steps, last=end):
          summary["train"] = _log_window(writer, metrics, step) or summary["train"]
        evaluate = itstime(step, cfg.eval_every_steps, last=end)
        save = evaluate or itstime(step, cfg.checkpoint_every_steps,
                                   last=end or stopper.requested)
        # One device-to-host copy serves both validation and the checkpoint.
        host = host_state() if save else None
        valid = _validate(model, host, validation_tracks, config, clock,
                          metrics) if evaluate else None
        if valid:
          writer.write("valid", step, valid)
          _report_validation(progress, step, valid, model.num_sources)
          summary["valid"] = valid
        if save:
          _save(ckpt, step, host, config, loader, metrics, clock, valid)
        writer.flush()
        if end or stopper.requested:
          progress.write(_stop_message(step, num_steps, out_of_time, clock))
          break
  finally:
    summary["best_step"] = _close(ckpt, progress, writer, loader if own_loader else None)
  summary.update(step=step, stopped_by_signal=stopper.requested,
                 train_seconds=clock.train_seconds(),
                 first_step_seconds=metrics.first_step_seconds,
                 steps_per_sec=metrics.steps_per_sec)
  if is_main:
    summary["plot"] = plot_curves(workdir)
  return summary


def _start_loader(config, workdir: str, loader, meta: dict | None, state, ckpt: Checkpointer):
  """The loader at the checkpoint's position (the config's own when None)."""
  loader = loader or make_loader(config)
  if meta is not None:
    loader.load_state_dict(meta["loader"])
    print(f"resumed from step {int(state.step)} ({ckpt.directory})", flush=True)
  elif jax.process_index() == 0:
    print(f"training from scratch: {count_params(state.params):,} parameters, "
          f"{jax.device_count()} devices on {jax.process_count()} processes", flush=True)
  # Written once the loader has accepted the config, so that a run that
  # failed on, say, a wrong data path does not claim the workdir.
  write_config(workdir, config)
  return loader


def _log_window(writer: MetricWriter, metrics: StepMetrics, step: int) -> dict | None:
  means = metrics.window_means()
  if means:
    writer.write("train", step, means)
  return means


def _validate(model, state, validation_tracks, config, clock: Clock,
              metrics: StepMetrics) -> dict:
  """Validation metrics of the EMA (or raw) parameters; not training time."""
  metrics.drain()
  trained_seconds = clock.train_seconds()   # the x axis of curves over time
  started = time.time()
  with clock.excluded():
    params = state.ema_params if state.ema_params is not None else state.params
    valid = validate(model, params, validation_tracks(), config)
  metrics.restart_speed()
  if valid:
    valid.update(seconds=time.time() - started, train_seconds=trained_seconds)
  return valid


def _save(ckpt: Checkpointer, step: int, state, config, loader, metrics: StepMetrics,
          clock: Clock, valid: dict | None) -> None:
  metrics.drain()
  ckpt.save(step, state.checkpoint_tree(), config, loader_state=loader.state_dict(),
            metrics={"sdr": valid["sdr"]} if valid else None, pending=metrics.pending,
            train_seconds=clock.train_seconds())


def _stop_message(step: int, num_steps: int, out_of_time: bool, clock: Clock) -> str:
  if out_of_time:
    return f"time budget of {clock.budget_seconds:g} s spent at step {step}; checkpoint saved"
  if step < num_steps:
    return (f"stopped by signal at step {step}; checkpoint saved, "
            "run the same command again to resume")
  return f"trained to step {step}"


def _close(ckpt: Checkpointer, progress: Progress, writer: MetricWriter, loader) -> int | None:
  """Closes what the loop opened (the last asynchronous save is awaited); the best step."""
  progress.close()
  if loader is not None and hasattr(loader, "close"):
    loader.close()   # its prefetch threads
  try:
    ckpt.wait()
    return ckpt.best_step()
  finally:
    ckpt.close()
    writer.close()
