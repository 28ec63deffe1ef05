"""Validation during training: separate whole tracks, score them (uSDR, loss,
BSS Eval v4), averaged identically on any number of processes."""

from __future__ import annotations

from typing import Iterable

import jax
import numpy as np

from attnsep_jax.evaluation import separate_and_score_track, undefined_as_nan
from attnsep_jax.losses import per_source_loss
from attnsep_jax.metrics import utterance_sdr
from attnsep_jax.train import distributed
from attnsep_jax.train.step import source_names


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
  metric_fns = {"usdr": utterance_sdr,
                "loss": lambda r, e: per_source_loss(r[None], e[None], **loss_kwargs)}
  rows = []   # per track: uSDR, loss, BSS SDR per source (zeros: another process's)
  for index, (name, mixture, sources) in enumerate(tracks):
    row = np.zeros(3 * len(names), np.float32)
    if index % jax.process_count() == jax.process_index():
      result = separate_and_score_track(
          model, params, name, mixture, sources, sample_rate=config.data.sample_rate,
          inference=config.inference, metrics=metric_fns)
      row[:len(names)] = result.metrics["usdr"]
      row[len(names):2 * len(names)] = result.metrics["loss"]
      row[2 * len(names):] = result.bss_sdr()
    rows.append(row)
  if not rows:
    return {}
  # Every track's row comes from exactly one process (the others add zeros,
  # which is exact), and the mean over tracks is then taken in track order:
  # the numbers do not depend on how many processes shared the work.
  rows = distributed.sum_across_processes(np.stack(rows)).astype(np.float64)
  count = len(rows)
  sdr, loss = rows[:, :len(names)].mean(axis=0), rows[:, len(names):2 * len(names)].mean(axis=0)
  with undefined_as_nan():
    bss = np.nanmean(rows[:, 2 * len(names):], axis=0)
  metrics = {"sdr": float(sdr.mean()), "loss": float(np.sum(loss * weights) / weights.sum()),
             "bss_sdr": float(bss.mean()), "tracks": float(count)}
  for name, s, l, b in zip(names, sdr, loss, bss):
    metrics[f"sdr_{name}"] = float(s)
    metrics[f"loss_{name}"] = float(l)
    metrics[f"bss_sdr_{name}"] = float(b)
  return metrics
