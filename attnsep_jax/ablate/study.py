"""Running an ablation study: variants, their configs, training and scoring.

Every variant (the base included) is trained with the same data, seed, budget
and overrides, in its own workdir ``STUDY/<variant>/seed_<k>``, and scored on
the test subset with its best checkpoint by validation SDR.  A variant's
``test_results.json`` records what it was trained and scored with, so that a
re-run skips finished work, resumes interrupted training and re-scores (never
retrains) a variant asked for under another scoring protocol.
"""

from __future__ import annotations

import glob
import json
import os
import time
from typing import Sequence

import numpy as np

from attnsep_jax import SOURCES
from attnsep_jax import config as config_lib
from attnsep_jax.files import write_json

BASE_NAME = "base"
RESULT_FILE = "test_results.json"


class StudyStopped(Exception):
  """A variant's training was stopped by a signal (SIGTERM/SIGINT) before its end."""


def discover_variants(ablations: str | None, names: Sequence[str] = ()) -> dict[str, str | None]:
  """Maps variant name -> ablation file (None for the base), sorted by name.

  Args:
    ablations: a folder of ablation files, one file, or None (the base only).
    names: keep only these variants (all when empty).
  Raises:
    ConfigError: a name that is not a variant.
  """
  variants: dict[str, str | None] = {BASE_NAME: None}
  if ablations:
    files = (sorted(glob.glob(os.path.join(ablations, "*.py"))) if os.path.isdir(ablations)
             else [ablations])
    for path in files:
      name = os.path.splitext(os.path.basename(path))[0]
      if not name.startswith("_"):
        variants[name] = path
  if names:
    unknown = sorted(set(names) - set(variants))
    if unknown:
      raise config_lib.ConfigError(
          f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(variants)}")
    variants = {k: v for k, v in variants.items() if k in names}
  return variants


def variant_config(base: config_lib.ConfigDict, ablation_file: str | None, *,
                   data_root: str | None, steps: int | None, seed: int,
                   overrides: Sequence[str] = (),
                   minutes: float | None = None) -> config_lib.ConfigDict:
  """The base config with the ablation's override and the study's shared settings.

  Args:
    base: the config every variant starts from.
    ablation_file: a file with ``override(config)``; None for the base.
    data_root: the training corpus (None: the config's).
    steps: ``train.num_steps`` (None: the config's).
    seed: the model's and the data's seed.
    overrides: ``a.b=value`` strings applied after the ablation (they win).
    minutes: a training-time budget per variant (None: steps only).
  """
  config = config_lib.apply_overrides(base, [])
  if ablation_file is not None:
    config = config_lib.load_ablation(ablation_file)(config)
  config = config_lib.apply_overrides(config, overrides)
  if data_root is not None:
    config.data.root = data_root
  if steps is not None:
    config.train.num_steps = steps
  if minutes is not None:
    config.train.time_budget_seconds = 60.0 * minutes
  config.seed = seed
  config.data.seed = seed
  return config


def evaluate_variant(workdir: str, test_seconds: float | None = None, *,
                     test_data: str | None = None, with_museval: bool = False) -> dict:
  """Scores a trained variant on the test subset with its selected parameters
  (the best checkpoint by validation SDR: the same rule for every variant).

  Args:
    workdir: the variant's training workdir.
    test_seconds: keep the first N s of each track (None: whole tracks).
    test_data: the corpus whose test subset is scored (None: the training one).
    with_museval: also compute BSS Eval v4.
  Returns:
    ``{"test_sdr": {track: {source: dB}}}``: the utterance SDR, plus
    ``"museval_sdr"`` (BSS Eval v4, median over 1 s windows; museval's
    numbers from ``attnsep_jax.bsseval``) when asked.
  """
  from attnsep_jax.data.loader import validation_tracks
  from attnsep_jax.data.musdb import DataError
  from attnsep_jax.evaluation import separate_and_score
  from attnsep_jax.metrics import utterance_sdr
  from attnsep_jax.models.network import build_model
  from attnsep_jax.train.checkpoint import restore_inference_params

  config, params, _ = restore_inference_params(workdir)
  rate = config.data.sample_rate
  root = test_data or config.data.root
  tracks = validation_tracks(root, is_wav=config.data.is_wav, sample_rate=rate, split="test",
                             max_seconds=test_seconds)
  scores: dict[str, dict] = {"test_sdr": {}, **({"museval_sdr": {}} if with_museval else {})}
  for result in separate_and_score(build_model(config.model), params, tracks, sample_rate=rate,
                                   inference=config.inference, bss_eval=with_museval,
                                   metrics={"usdr": utterance_sdr}):
    scores["test_sdr"][result.name] = _by_source(result.metrics["usdr"])
    if with_museval:   # NaN where BSS Eval is undefined (a silent stem), as in museval
      scores["museval_sdr"][result.name] = _by_source(result.bss_sdr())
  if not scores["test_sdr"]:
    raise DataError(f"no test tracks under {root}")
  return scores


def _by_source(values) -> dict[str, float]:
  return {s: float(v) for s, v in zip(SOURCES, np.asarray(values))}


def _step_seconds(workdir: str) -> float | None:
  from attnsep_jax.train.logs import read_metrics
  rates = [e["steps_per_sec"] for e in read_metrics(workdir)
           if e.get("split") == "train" and e.get("steps_per_sec")]
  return float(1.0 / np.median(rates)) if rates else None


def validation_curve(workdir: str) -> list[tuple[int, float]]:
  from attnsep_jax.train.logs import read_metrics
  return [(e["step"], e["sdr"]) for e in read_metrics(workdir)
          if e.get("split") == "valid" and "sdr" in e]


def selected_step(curve: Sequence[Sequence[float]]) -> int | None:
  """The step of the best validation SDR (the earliest of equal scores): the
  checkpoint that is scored, as long as every evaluation step is also a
  checkpoint step (the study's protocol)."""
  finite = [(sdr, -step) for step, sdr in curve if np.isfinite(sdr)]
  return -max(finite)[1] if finite else None


def _read_result(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def _write_result(path: str, result: dict) -> None:
  write_json(path, result, what="the variant's test results", sort_keys=True)


def add_museval(name: str, workdir: str, log=print) -> None:
  """Adds BSS Eval v4 scores to a finished variant that lacks them (same
  test data and seconds as its fast SDR)."""
  result_path = os.path.join(workdir, RESULT_FILE)
  result = _read_result(result_path)
  if "museval_sdr" in result:
    return
  log(f"[{name}] scoring the test subset with museval")
  result["museval_sdr"] = evaluate_variant(
      workdir, result.get("test_seconds"), test_data=result.get("test_data"),
      with_museval=True)["museval_sdr"]
  _write_result(result_path, result)


def _finished_result(workdir: str, config) -> dict | None:
  """The stored result of a variant trained under this very budget, else None."""
  result_path = os.path.join(workdir, RESULT_FILE)
  if not os.path.exists(result_path):
    return None
  result = _read_result(result_path)
  if (result.get("num_steps") != config.train.num_steps or result.get(
      "time_budget_seconds") != config.train.get("time_budget_seconds")):
    return None
  return result


def _rescore(name: str, workdir: str, result: dict, protocol: dict, with_museval: bool,
             log=print) -> dict:
  """A finished variant: kept if scored under ``protocol``, else scored again."""
  if all(result.get(k, "?") == v for k, v in protocol.items()):
    log(f"[{name}] finished earlier: {os.path.join(workdir, RESULT_FILE)}")
  else:
    log(f"[{name}] trained earlier; scoring it on the test subset of "
        f"{protocol['test_data']}")
    result.pop("museval_sdr", None)
    # museval in the same pass, so the audio is separated once.
    result.update(protocol, **evaluate_variant(workdir, with_museval=with_museval, **protocol))
    result.setdefault("selected_step", selected_step(result.get("validation_curve", [])))
    _write_result(os.path.join(workdir, RESULT_FILE), result)
  if with_museval:
    add_museval(name, workdir, log)
  return result


def _train_and_score(name: str, config, workdir: str, protocol: dict, with_museval: bool,
                     log=print) -> dict:
  from attnsep_jax.models.network import abstract_params, build_model, count_params
  from attnsep_jax.train.loop import train_and_evaluate

  log(f"[{name}] training to step {config.train.num_steps} in {workdir}")
  started = time.time()
  trained = train_and_evaluate(config, workdir)
  if trained.get("stopped_by_signal"):
    # Scoring a half-trained variant would record it as finished.
    raise StudyStopped(f"{name} stopped by a signal at step {trained['step']} of "
                       f"{config.train.num_steps}; checkpoint saved, run the same command "
                       "again to resume")
  log(f"[{name}] evaluating on the test subset")
  curve = validation_curve(workdir)
  result = {
      "name": name,
      "num_steps": config.train.num_steps,
      "time_budget_seconds": config.train.get("time_budget_seconds"),
      "steps_trained": trained["step"],
      "train_seconds": trained.get("train_seconds"),
      "seed": config.seed,
      "params": count_params(abstract_params(build_model(config.model))),
      "step_seconds": _step_seconds(workdir),
      **protocol,
      **evaluate_variant(workdir, with_museval=with_museval, **protocol),
      "validation_curve": curve,
      "selected_step": selected_step(curve),
      "wall_seconds_this_run": time.time() - started,
  }
  _write_result(os.path.join(workdir, RESULT_FILE), result)
  return result


def run_variant(name: str, config, workdir: str, test_seconds: float | None,
                log=print, with_museval: bool = False, test_data: str | None = None) -> dict:
  """Trains (or resumes) one variant, then scores it; skips finished work.

  A variant trained earlier under the same budget is not retrained; if it was
  scored under another protocol (test data or seconds), it is scored again.

  Raises:
    WorkdirConfigError: the workdir holds a variant trained with another config.
  """
  from attnsep_jax.train.loop import check_workdir_config

  protocol = {"test_data": os.path.normpath(test_data or config.data.root),
              "test_seconds": test_seconds}
  result = _finished_result(workdir, config)
  if result is None:
    return _train_and_score(name, config, workdir, protocol, with_museval, log)
  # A finished variant counts only if it was trained with this very config.
  check_workdir_config(workdir, config)
  return _rescore(name, workdir, result, protocol, with_museval, log)


def run_study(base_config, variants: dict, workdir: str, *, data_root, steps,
              seeds: Sequence[int], overrides: Sequence[str] = (),
              minutes: float | None = None,
              test_seconds: float | None = None, with_museval: bool = False,
              test_data: str | None = None, log=print) -> None:
  """Runs every variant for every seed (``variant_config`` says what they share)."""
  for seed in seeds:
    shared = dict(data_root=data_root, steps=steps, seed=seed, overrides=overrides,
                  minutes=minutes)
    base = variant_config(base_config, None, **shared)
    for name, ablation_file in variants.items():
      config = variant_config(base_config, ablation_file, **shared)
      if ablation_file is not None and config.to_dict() == base.to_dict():
        # e.g. loss_l1 on a base that already trains with L1: a second base.
        log(f"{name}: the base config already has this setting; not trained")
        continue
      run_variant(name, config, os.path.join(workdir, name, f"seed_{seed}"),
                  test_seconds, log, with_museval, test_data)


def _result_paths(workdir: str) -> list[str]:
  return sorted(glob.glob(os.path.join(workdir, "*", "seed_*", RESULT_FILE)))


def add_museval_to_finished(workdir: str, log=print) -> None:
  """museval for every finished variant of a study that lacks it (--report-only)."""
  for path in _result_paths(workdir):
    variant_dir = os.path.dirname(path)
    add_museval(os.path.basename(os.path.dirname(variant_dir)), variant_dir, log)


def collect_results(workdir: str) -> dict[str, list[dict]]:
  """variant -> list of per-seed results found under ``workdir``."""
  results: dict[str, list[dict]] = {}
  for path in _result_paths(workdir):
    name = os.path.basename(os.path.dirname(os.path.dirname(path)))
    results.setdefault(name, []).append(_read_result(path))
  return results
