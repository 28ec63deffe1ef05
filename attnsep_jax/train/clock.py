"""When to do things in the training loop: a clock of training time and ``itstime``.

Training time is what a time budget counts: wall time of this run, minus what
validation took, plus what earlier runs of the workdir spent (stored in their
checkpoints), so that a resumed run stops where an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np


def itstime(step: int, every: int | None, total: int | None = None, last: bool = False) -> bool:
  """True every ``every`` steps (never when it is 0/None), and at ``total`` or
  ``last`` when the action is wanted at all."""
  if not every:
    return False
  return step % every == 0 or step == total or last


class Clock:
  """Training seconds over every run of a workdir, validation excluded.

  Args (constructor):
    spent_seconds: what earlier runs of the workdir trained (0 when fresh).
    budget_seconds: stop after this much training (None/0: no budget).
  """

  def __init__(self, spent_seconds: float = 0.0, budget_seconds: float | None = None):
    self.spent_seconds = float(spent_seconds or 0.0)
    self.budget_seconds = budget_seconds or None
    self._start = time.time()
    self._excluded = 0.0

  def train_seconds(self) -> float:
    return self.spent_seconds + time.time() - self._start - self._excluded

  @contextlib.contextmanager
  def excluded(self):
    """Time spent inside does not count as training (validation)."""
    start = time.time()
    try:
      yield
    finally:
      self._excluded += time.time() - start

  def budget_fraction(self) -> float:
    """The share of the budget spent (0 without one), as the first process
    measures it: every process gets the same figure, so that all of them stop
    at the same step and follow the same learning-rate schedule."""
    if not self.budget_seconds:
      return 0.0
    from attnsep_jax.train import distributed
    fraction = np.asarray(self.train_seconds() / self.budget_seconds, np.float32)
    return float(distributed.broadcast_from_first(fraction))
