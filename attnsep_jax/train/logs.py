"""Metrics out of the training loop: JSON lines, TensorBoard, a PNG of the curves.

``WORKDIR/metrics.jsonl`` holds one object per line:
``{"split": "train"|"valid", "step": int, "time": float, <metric>: float, ...}``;
``WORKDIR/tensorboard/`` the same scalars as ``<split>/<metric>``;
``WORKDIR/curves.png`` the training loss and validation SDR.  Only process 0
writes.  On resume, entries after the restored step (written by the
interrupted run, about to be recomputed) are dropped, so the files read as if
the run had never stopped.
"""

from __future__ import annotations

import json
import math
import os
import time

from attnsep_jax import files

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
PLOT_FILE = "curves.png"


def read_metrics(workdir_or_file: str) -> list[dict]:
  """All entries of a metrics.jsonl (a truncated last line, from a kill, is skipped)."""
  path = workdir_or_file
  if os.path.isdir(path):
    path = os.path.join(path, METRICS_FILE)
  if not os.path.exists(path):
    return []
  entries = []
  with open(path) as f:
    for line in f:
      try:
        entries.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return entries


class MetricWriter:
  """Writes scalars to JSON lines and TensorBoard event files.

  Args (constructor):
    workdir: the run directory.
    enabled: False on every process but the first.
    resume_step: the step training restarts from; later entries are dropped.
  """

  def __init__(self, workdir: str, enabled: bool = True, resume_step: int = 0):
    self.enabled = enabled
    self.path = os.path.join(workdir, METRICS_FILE)
    self._tb = None
    if not enabled:
      return
    kept = [e for e in read_metrics(self.path) if e.get("step", 0) <= resume_step]
    files.write_text(self.path, "".join(json.dumps(e) + "\n" for e in kept),
                     "the metrics of the run")
    try:
      from tensorboardX import SummaryWriter
      # purge_step hides events from the interrupted run past the restored step.
      self._tb = SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR),
                               purge_step=resume_step + 1 if resume_step else None)
    except ImportError:  # TensorBoard output is optional; JSON lines are not
      self._tb = None

  def write(self, split: str, step: int, metrics: dict) -> None:
    """Appends one entry; non-finite values are written as null in JSON."""
    if not self.enabled:
      return
    entry = {"split": split, "step": int(step), "time": time.time()}
    for key, value in metrics.items():
      value = float(value)
      entry[key] = value if math.isfinite(value) else None
      if self._tb is not None and math.isfinite(value):
        self._tb.add_scalar(f"{split}/{key}", value, int(step))
    with open(self.path, "a") as f:
      f.write(json.dumps(entry) + "\n")
      f.flush()

  def flush(self):
    if self._tb is not None:
      self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def plot_curves(workdir: str, path: str | None = None) -> str | None:
  """Draws training loss and validation SDR (per source and mean) to a PNG.

  Args:
    workdir: the run directory (reads metrics.jsonl).
    path: output file; default ``WORKDIR/curves.png``.
  Returns:
    the PNG path, or None when there is nothing to plot.
  """
  entries = read_metrics(workdir)
  train = [e for e in entries if e["split"] == "train" and e.get("loss") is not None]
  valid = [e for e in entries if e["split"] == "valid"]
  if not train and not valid:
    return None
  import matplotlib
  matplotlib.use("Agg")   # no display on servers
  import matplotlib.pyplot as plt

  fig, (ax_loss, ax_sdr) = plt.subplots(1, 2, figsize=(12, 4.5))
  if train:
    ax_loss.plot([e["step"] for e in train], [e["loss"] for e in train], label="train")
  valid_loss = [e for e in valid if e.get("loss") is not None]
  if valid_loss:
    ax_loss.plot([e["step"] for e in valid_loss], [e["loss"] for e in valid_loss],
                 "o-", label="validation")
  ax_loss.set_xlabel("step")
  ax_loss.set_ylabel("loss")
  ax_loss.set_title("loss")
  ax_loss.grid(alpha=0.3)
  ax_loss.legend()
  if valid:
    steps = [e["step"] for e in valid]
    keys = sorted(k for k in valid[0] if k.startswith("sdr_"))
    for key in keys:
      ax_sdr.plot(steps, [e.get(key) for e in valid], ".-", label=key[4:], alpha=0.7)
    ax_sdr.plot(steps, [e.get("sdr") for e in valid], "o-", color="black", label="mean")
    ax_sdr.legend()
  ax_sdr.set_xlabel("step")
  ax_sdr.set_ylabel("SDR (dB)")
  ax_sdr.set_title("validation SDR (full tracks)")
  ax_sdr.grid(alpha=0.3)
  fig.tight_layout()
  path = path or os.path.join(workdir, PLOT_FILE)
  with files.staged_file(path, "the training curves", suffix=".png") as tmp:
    fig.savefig(tmp, dpi=100)
  plt.close(fig)
  return path
