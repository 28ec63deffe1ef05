"""Ablation studies: train, evaluate and tabulate every variant in one command.

    python -m attnsep_jax.ablate --base configs/cpu_small.py \\
        --ablations configs/ablations/ --data data/synth --workdir runs/ablate --steps 2000

Every variant (the base included) is trained with the same data, seed, budget
(``--steps``, or ``--minutes`` of training time with ``--steps`` as the cap)
and evaluation protocol, in its own sub-workdir (``WORKDIR/<variant>/seed_<k>``),
so an interrupted study resumes where it stopped and finished variants are not
retrained.  ``--only NAME`` runs one variant (one job per variant on a
cluster); ``--report-only`` tabulates whatever has finished.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from typing import Sequence

import numpy as np

from attnsep_jax import SOURCES
from attnsep_jax import config as config_lib

BASE_NAME = "base"
RESULT_FILE = "test_results.json"


def discover_variants(ablations: str | None, names: Sequence[str] = ()) -> dict[str, str | None]:
  """Maps variant name -> ablation file (None for the base), sorted by name."""
  variants: dict[str, str | None] = {BASE_NAME: None}
  if ablations:
    if os.path.isdir(ablations):
      files = sorted(glob.glob(os.path.join(ablations, "*.py")))
    else:
      files = [ablations]
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
  """The base config with the ablation's override and the study's shared settings."""
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

  ``test_data`` is the corpus whose test subset is scored (default: the one
  the variant trained on); ``test_seconds`` keeps the first N s of each track.

  Returns ``{"test_sdr": {track: {source: dB}}}``: the utterance SDR, plus
  ``"museval_sdr"`` (BSS Eval v4, median over 1 s windows; museval's numbers
  from ``attnsep_jax.bsseval``) when asked.
  """
  from attnsep_jax.data.loader import validation_tracks
  from attnsep_jax.inference import separate
  from attnsep_jax.metrics import utterance_sdr
  from attnsep_jax.models.network import build_model
  from attnsep_jax.train.checkpoint import restore_inference_params

  config, params = restore_inference_params(workdir)
  model = build_model(config.model)
  rate = config.data.sample_rate
  root = test_data or config.data.root
  scores: dict[str, dict] = {"test_sdr": {}}
  if with_museval:
    from attnsep_jax.evaluation import score_track, track_medians
    scores["museval_sdr"] = {}
  for name, mixture, sources in validation_tracks(
      root, is_wav=config.data.is_wav, sample_rate=rate,
      split="test", max_seconds=test_seconds):
    estimate = separate(model, params, mixture, sample_rate=rate, **config.inference)
    sdr = np.asarray(utterance_sdr(sources, estimate))   # (sources,)
    scores["test_sdr"][name] = {s: float(v) for s, v in zip(SOURCES, sdr)}
    if with_museval:
      medians = track_medians(score_track(name, sources, estimate, rate))
      scores["museval_sdr"][name] = {s: medians[s]["SDR"] for s in SOURCES}
  if not scores["test_sdr"]:
    raise RuntimeError(f"no test tracks under {root}")
  return scores


def paired_bootstrap(differences: np.ndarray, rounds: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean of paired per-track differences."""
  if len(differences) < 2:
    return float("nan"), float("nan")
  rng = np.random.default_rng(seed)
  picks = rng.integers(0, len(differences), size=(rounds, len(differences)))
  means = differences[picks].mean(axis=1)
  tail = (1.0 - level) / 2
  return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def _write_json(path: str, payload: dict) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  os.replace(tmp, path)  # a kill mid-write never leaves a truncated result


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


def add_museval(name: str, workdir: str, log=print) -> None:
  """Adds BSS Eval v4 scores to a finished variant that lacks them (same
  test data and seconds as its fast SDR)."""
  result_path = os.path.join(workdir, RESULT_FILE)
  with open(result_path) as f:
    result = json.load(f)
  if "museval_sdr" in result:
    return
  log(f"[{name}] scoring the test subset with museval")
  result["museval_sdr"] = evaluate_variant(
      workdir, result.get("test_seconds"), test_data=result.get("test_data"),
      with_museval=True)["museval_sdr"]
  _write_json(result_path, result)


def run_variant(name: str, config, workdir: str, test_seconds: float | None,
                log=print, with_museval: bool = False, test_data: str | None = None) -> dict:
  """Trains (or resumes) one variant, then evaluates it; skips finished work.

  A variant trained earlier under the same budget is not retrained; if it was
  scored under another protocol (test data or seconds), it is scored again.
  """
  from attnsep_jax.models.network import abstract_params, build_model, count_params
  from attnsep_jax.train.loop import check_workdir_config, train_and_evaluate

  result_path = os.path.join(workdir, RESULT_FILE)
  protocol = {"test_data": os.path.normpath(test_data or config.data.root),
              "test_seconds": test_seconds}
  result = None
  if os.path.exists(result_path):
    with open(result_path) as f:
      result = json.load(f)
    if (result.get("num_steps") != config.train.num_steps or result.get(
        "time_budget_seconds") != config.train.get("time_budget_seconds")):
      result = None
  if result is not None:
    # A finished variant counts only if it was trained with this very config.
    check_workdir_config(workdir, config)
    if all(result.get(k, "?") == v for k, v in protocol.items()):
      log(f"[{name}] finished earlier: {result_path}")
    else:
      log(f"[{name}] trained earlier; scoring it on the test subset of "
          f"{protocol['test_data']}")
      result.pop("museval_sdr", None)
      # museval in the same pass, so the audio is separated once.
      result.update(protocol, **evaluate_variant(workdir, with_museval=with_museval,
                                                 **protocol))
      result.setdefault("selected_step", selected_step(result.get("validation_curve", [])))
      _write_json(result_path, result)
    if with_museval:
      add_museval(name, workdir, log)
    return result

  log(f"[{name}] training to step {config.train.num_steps} in {workdir}")
  started = time.time()
  trained = train_and_evaluate(config, workdir)
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
  _write_json(result_path, result)
  return result


def run_study(base_config, variants: dict, workdir: str, *, data_root, steps,
              seeds: Sequence[int], overrides: Sequence[str] = (),
              minutes: float | None = None,
              test_seconds: float | None = None, with_museval: bool = False,
              test_data: str | None = None, log=print) -> None:
  for seed in seeds:
    base = variant_config(base_config, None, data_root=data_root, steps=steps, seed=seed,
                          overrides=overrides, minutes=minutes)
    for name, ablation_file in variants.items():
      config = variant_config(base_config, ablation_file, data_root=data_root,
                              steps=steps, seed=seed, overrides=overrides,
                              minutes=minutes)
      if ablation_file is not None and config.to_dict() == base.to_dict():
        # e.g. loss_l1 on a base that already trains with L1: a second base.
        log(f"{name}: the base config already has this setting; not trained")
        continue
      run_variant(name, config, os.path.join(workdir, name, f"seed_{seed}"),
                  test_seconds, log, with_museval, test_data)


def add_museval_to_finished(workdir: str, log=print) -> None:
  """museval for every finished variant of a study that lacks it (--report-only)."""
  for path in sorted(glob.glob(os.path.join(workdir, "*", "seed_*", RESULT_FILE))):
    variant_dir = os.path.dirname(path)
    name = os.path.basename(os.path.dirname(variant_dir))
    add_museval(name, variant_dir, log)


def collect_results(workdir: str) -> dict[str, list[dict]]:
  """variant -> list of per-seed results found under ``workdir``."""
  results: dict[str, list[dict]] = {}
  for path in sorted(glob.glob(os.path.join(workdir, "*", "seed_*", RESULT_FILE))):
    with open(path) as f:
      result = json.load(f)
    results.setdefault(os.path.basename(os.path.dirname(os.path.dirname(path))),
                       []).append(result)
  return results


def _per_track_average(seed_results: list[dict], metric: str) -> dict[str, np.ndarray]:
  """track -> (sources,) SDR averaged over seeds (tracks present in every seed)."""
  tracks = set.intersection(*(set(r[metric]) for r in seed_results))
  return {t: np.mean([[r[metric][t][s] for s in SOURCES] for r in seed_results], axis=0)
          for t in sorted(tracks)}


def summarize(results: dict[str, list[dict]], base: str = BASE_NAME,
              metric: str = "test_sdr") -> dict:
  """Per-variant SDR (mean over tracks, then mean/spread over seeds) and the
  difference to the base with a paired bootstrap interval over tracks.

  ``metric`` is "test_sdr" (utterance SDR) or "museval_sdr"; variants whose
  seeds do not all have it are left out.
  """
  results = {name: seed_results for name, seed_results in results.items()
             if all(metric in r for r in seed_results)}
  summary = {}
  base_tracks = _per_track_average(results[base], metric) if base in results else None
  for name, seed_results in sorted(results.items(), key=lambda kv: (kv[0] != base, kv[0])):
    per_seed = np.array([[np.mean([r[metric][t][s] for t in r[metric]])
                          for s in SOURCES] for r in seed_results])   # (seeds, sources)
    entry = {
        "seeds": [r["seed"] for r in seed_results],
        "sdr": dict(zip(SOURCES, per_seed.mean(axis=0).tolist())),
        "sdr_avg": float(per_seed.mean()),
        "sdr_avg_seed_std": float(per_seed.mean(axis=1).std()) if len(per_seed) > 1 else None,
        "params": seed_results[0]["params"],
        "step_seconds": float(np.mean([r["step_seconds"] for r in seed_results
                                       if r.get("step_seconds")] or [np.nan])),
        "num_steps": seed_results[0]["num_steps"],
        "steps_trained": [r.get("steps_trained", r["num_steps"]) for r in seed_results],
        "selected_steps": [selected_step(r.get("validation_curve", []))
                           for r in seed_results],
        "num_tracks": len(seed_results[0][metric]),
    }
    if base_tracks is not None and name != base:
      tracks = _per_track_average(seed_results, metric)
      common = sorted(set(tracks) & set(base_tracks))
      diffs = np.array([tracks[t].mean() - base_tracks[t].mean() for t in common])
      low, high = paired_bootstrap(diffs)
      entry["delta_vs_base"] = float(diffs.mean()) if len(diffs) else None
      entry["delta_ci95"] = [low, high]
      # Below the table's 0.01 dB resolution a "significant" flag would only
      # mark float noise between (near-)identical models.
      entry["significant"] = bool(len(diffs) > 1 and (low > 0 or high < 0)
                                  and abs(diffs.mean()) >= 0.01)
    summary[name] = entry
  return summary


def markdown_table(summary: dict) -> str:
  header = ("| variant | " + " | ".join(SOURCES) + " | avg | Δ vs base [95% CI] "
            "| params | step s | steps (scored) |")
  lines = [header, "|" + "---|" * (len(SOURCES) + 6)]
  for name, e in summary.items():
    avg = f"{e['sdr_avg']:.2f}"
    if e.get("sdr_avg_seed_std") is not None:
      avg += f" ± {e['sdr_avg_seed_std']:.2f}"
    if "delta_vs_base" in e and e["delta_vs_base"] is not None:
      low, high = e["delta_ci95"]
      delta = f"{e['delta_vs_base']:+.2f} [{low:+.2f}, {high:+.2f}]"
      if e["significant"]:
        delta = f"**{delta}**"
    else:
      delta = "—"
    step = f"{e['step_seconds']:.2f}" if np.isfinite(e["step_seconds"]) else "?"
    scored = ", ".join(f"{t} ({s if s is not None else '?'})" for t, s in zip(
        e.get("steps_trained", []), e.get("selected_steps", []))) or "?"
    lines.append(f"| {name} | " + " | ".join(f"{e['sdr'][s]:.2f}" for s in SOURCES)
                 + f" | {avg} | {delta} | {e['params']:,} | {step} | {scored} |")
  return "\n".join(lines)


def plot_study(summary: dict, results: dict, out_dir: str) -> list[str]:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(summary)
  paths = []
  fig, (ax, delta_ax) = plt.subplots(
      2, 1, figsize=(max(6, 0.9 * len(names)), 7), sharex=True,
      gridspec_kw={"height_ratios": [3, 2]})
  width = 0.8 / (len(SOURCES) + 1)
  for i, source in enumerate(SOURCES + ("avg",)):
    values = [summary[n]["sdr_avg"] if source == "avg" else summary[n]["sdr"][source]
              for n in names]
    ax.bar(np.arange(len(names)) + (i - len(SOURCES) / 2) * width, values, width,
           label=source)
  ax.set_ylabel("test SDR (dB)")
  ax.axhline(0, color="black", linewidth=0.5)
  ax.legend(fontsize=8, ncol=5)
  # The difference to the base with its interval: what the study is about.
  for i, name in enumerate(names):
    entry = summary[name]
    if entry.get("delta_vs_base") is None:
      continue
    low, high = entry["delta_ci95"]
    delta = entry["delta_vs_base"]
    color = "tab:red" if entry["significant"] else "tab:gray"
    delta_ax.errorbar([i], [delta], yerr=[[delta - low], [high - delta]], fmt="o",
                      color=color, capsize=4)
  delta_ax.axhline(0, color="black", linewidth=0.5)
  delta_ax.set_ylabel("Δ avg vs base (dB), 95% CI")
  delta_ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
  fig.tight_layout()
  paths.append(os.path.join(out_dir, "ablation_sdr.png"))
  fig.savefig(paths[-1], dpi=120)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(7, 4))
  for name in names:
    curve = results[name][0].get("validation_curve") or []
    if curve:
      steps, sdr = zip(*curve)
      ax.plot(steps, sdr, marker=".", label=name)
  ax.set_xlabel("step")
  ax.set_ylabel("validation SDR (dB)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  paths.append(os.path.join(out_dir, "ablation_curves.png"))
  fig.savefig(paths[-1], dpi=120)
  plt.close(fig)
  return paths


def report(workdir: str, log=print) -> dict | None:
  results = collect_results(workdir)
  if not results:
    log(f"no finished variants under {workdir}")
    return None
  summary = summarize(results)
  table = markdown_table(summary)
  plots = plot_study(summary, results, workdir)
  legend = ("Δ: paired difference to the base, bootstrap 95% CI over tracks; bold "
            "where the interval excludes 0 and |Δ| ≥ 0.01 dB.")
  first = next(iter(results.values()))[0]
  scored = (f"Scored on the {next(iter(summary.values()))['num_tracks']} test tracks of "
            f"{first.get('test_data', '?')}"
            + (f" (first {first['test_seconds']:g} s of each)"
               if first.get("test_seconds") else "") + ". ")
  text = (scored + "Test SDR (dB; utterance SDR averaged over tracks). " + legend
          + "\n\n" + table + "\n")
  payload = {"summary": summary, "results": results}
  museval_summary = summarize(results, metric="museval_sdr")
  if museval_summary:
    museval_table = markdown_table(museval_summary)
    text += ("\nmuseval SDR (dB; BSS Eval v4, median over 1 s windows, averaged "
             "over tracks). " + legend + "\n\n" + museval_table + "\n")
    payload["summary_museval"] = museval_summary
  with open(os.path.join(workdir, "ablations.md"), "w") as f:
    f.write(text)
  _write_json(os.path.join(workdir, "ablations.json"), payload)
  log(text)
  log(f"wrote {os.path.join(workdir, 'ablations.md')}, ablations.json, "
      + ", ".join(os.path.basename(p) for p in plots))
  return summary


def main(argv=None):
  parser = argparse.ArgumentParser(
      description="Train, evaluate and tabulate ablations against a base config.")
  parser.add_argument("--base", default=None,
                      help="base config (configs/cpu_small.py, configs/paper.py); "
                      "not needed with --report-only")
  parser.add_argument("--ablations", default=None,
                      help="folder of ablation files with override(config), or one file")
  parser.add_argument("--data", default=None, help="corpus root (overrides config.data.root)")
  parser.add_argument("--workdir", required=True, help="study folder; one sub-workdir per variant")
  parser.add_argument("--steps", type=int, default=None, help="training steps per variant")
  parser.add_argument("--minutes", type=float, default=None,
                      help="training-time budget per variant (validation excluded); "
                      "--steps still sets the learning-rate schedule and a step cap")
  parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
  parser.add_argument("--only", action="append", default=[],
                      help="run only this variant (repeatable); 'base' is the base")
  parser.add_argument("--report-only", action="store_true",
                      help="only tabulate the finished variants")
  parser.add_argument("--test-data", default=None,
                      help="corpus whose test subset is scored (default: --data)")
  parser.add_argument("--test-seconds", type=float, default=None,
                      help="score only the first N seconds of each test track")
  parser.add_argument("--museval", action="store_true",
                      help="also score every variant with BSS Eval v4 (museval's numbers, "
                      "computed by attnsep_jax.bsseval); with --report-only, scores "
                      "finished variants that lack it")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config override applied to every variant (repeatable)")
  args = parser.parse_args(argv)
  try:
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  except ValueError:
    parser.error(f"--seeds must be integers separated by commas, got {args.seeds!r}")
  if not args.report_only:
    if args.base is None:
      parser.error("--base is required unless --report-only")
    try:
      base = config_lib.load_config(args.base)
      variants = discover_variants(args.ablations, args.only)
    except config_lib.ConfigError as e:
      parser.error(str(e))
    os.makedirs(args.workdir, exist_ok=True)
    from attnsep_jax.train.loop import WorkdirConfigError
    try:
      run_study(base, variants, args.workdir, data_root=args.data, steps=args.steps,
                seeds=seeds, overrides=args.set, minutes=args.minutes,
                test_seconds=args.test_seconds, test_data=args.test_data,
                with_museval=args.museval)
    except WorkdirConfigError as e:
      print(f"ablate: error: {e}", file=sys.stderr)
      sys.exit(1)
  elif args.museval:
    add_museval_to_finished(args.workdir)
  if report(args.workdir) is None:
    sys.exit(1)


if __name__ == "__main__":
  main()
