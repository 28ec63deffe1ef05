"""The host side of training steps: metrics read back one step late, NaN
checks, logging-window averages, speed and the progress bar."""

from __future__ import annotations

import sys
import time
from typing import Callable

import jax


class TrainingDivergedError(RuntimeError):
  """The loss or the gradient became NaN/Inf; training stopped without saving."""


class Progress:
  """A tqdm bar on a terminal; plain lines (for log files) otherwise."""

  def __init__(self, start: int, total: int, enabled: bool, every: int):
    self.enabled, self.every, self.total = enabled, max(1, every), total
    self.bar = None
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


class StepMetrics:
  """Sums of the step metrics over the current logging window, and speed.

  A step's metrics are read back after the next step is dispatched, which
  keeps the device busy while the host looks at them.  ``pending`` (the
  window's sums and count) goes into every checkpoint, so that a resumed run
  logs the same averages as an uninterrupted one.

  Args (constructor):
    pending: the window restored from a checkpoint ({"sums", "count"}).
    progress: where each finished step is reported.
    last_good_step: the newest checkpoint's step, for the divergence message.
  """

  def __init__(self, pending: dict | None, progress: Progress,
               last_good_step: Callable[[], int | None]):
    self.pending = pending or {"sums": {}, "count": 0}
    self.progress, self.last_good_step = progress, last_good_step
    self.in_flight = None   # (step, device metrics) not yet read back
    self.steps_per_sec = None
    self.first_step_seconds = None
    self._window_start, self._window_steps = time.time(), 0

  def record(self, step: int, device_metrics) -> None:
    previous, self.in_flight = self.in_flight, (step, device_metrics)
    if previous is not None:
      self._read_back(*previous)

  def drain(self) -> None:
    """Reads back the step in flight (before logging, validating or saving)."""
    if self.in_flight is not None:
      self._read_back(*self.in_flight)
      self.in_flight = None

  def window_means(self) -> dict | None:
    """The window's averages (and steps/s); starts a new window."""
    self.drain()
    count = self.pending["count"]
    if not count:
      return None
    means = {k: v / count for k, v in self.pending["sums"].items()}
    if self.steps_per_sec:
      means["steps_per_sec"] = self.steps_per_sec
    self.pending = {"sums": {}, "count": 0}
    return means

  def restart_speed(self) -> None:
    """Validation pauses the steps: speed is measured afresh after it."""
    self._window_start, self._window_steps = time.time(), 0

  def _read_back(self, step: int, device_metrics) -> None:
    host = {k: float(v[0]) for k, v in jax.device_get(device_metrics).items()}
    if host.pop("finite") < 1.0:
      raise TrainingDivergedError(
          f"non-finite loss or gradient at step {step} (loss={host['loss']}, "
          f"grad_norm={host['grad_norm']}); training stopped.  That step did not "
          f"update the parameters and nothing was saved after it: the last good "
          f"checkpoint (step {self.last_good_step()}) is intact.  Lower "
          "optim.learning_rate or check the data for NaN/Inf.")
    for key, value in host.items():
      self.pending["sums"][key] = self.pending["sums"].get(key, 0.0) + value
    self.pending["count"] += 1
    self._time_step()
    self.progress.update(step, host["loss"], self.steps_per_sec)

  def _time_step(self) -> None:
    elapsed = time.time() - self._window_start
    if self.first_step_seconds is None:   # compilation: not part of the speed
      self.first_step_seconds = elapsed
      self.restart_speed()
      return
    self._window_steps += 1
    self.steps_per_sec = self._window_steps / elapsed if elapsed > 0 else None
