"""The report of an ablation study: statistics, tables, plots, ``ablations.json``.

Per variant: SDR per source averaged over tracks, then mean and spread over
seeds; against the base, the mean paired per-track difference with a
percentile-bootstrap interval over tracks.  Reads only the variants'
``test_results.json`` (``study.collect_results``), so it runs on a finished,
partial or copied study alike.
"""

from __future__ import annotations

import os

import numpy as np

from attnsep_jax import SOURCES
from attnsep_jax.ablate.study import BASE_NAME, collect_results, selected_step
from attnsep_jax.files import staged_file, write_json, write_text
from attnsep_jax.pairing import delta_text, paired_delta, per_track_average
from attnsep_jax.tables import markdown_table

LEGEND = ("Δ: paired difference to the base, bootstrap 95% CI over tracks; bold "
          "where the interval excludes 0 and |Δ| ≥ 0.01 dB.")


def _entry(seed_results: list[dict], metric: str) -> dict:
  per_seed = np.array([[np.mean([r[metric][t][s] for t in r[metric]])
                        for s in SOURCES] for r in seed_results])   # (seeds, sources)
  return {
      "seeds": [r["seed"] for r in seed_results],
      "sdr": dict(zip(SOURCES, per_seed.mean(axis=0).tolist())),
      "sdr_avg": float(per_seed.mean()),
      "sdr_avg_seed_std": float(per_seed.mean(axis=1).std()) if len(per_seed) > 1 else None,
      "params": seed_results[0]["params"],
      "step_seconds": float(np.mean([r["step_seconds"] for r in seed_results
                                     if r.get("step_seconds")] or [np.nan])),
      "num_steps": seed_results[0]["num_steps"],
      "steps_trained": [r.get("steps_trained", r["num_steps"]) for r in seed_results],
      "selected_steps": [selected_step(r.get("validation_curve", [])) for r in seed_results],
      "num_tracks": len(seed_results[0][metric]),
  }


def summarize(results: dict[str, list[dict]], base: str = BASE_NAME,
              metric: str = "test_sdr") -> dict:
  """Per-variant SDR (mean over tracks, then mean/spread over seeds) and the
  difference to the base with a paired bootstrap interval over tracks.

  Args:
    results: variant -> per-seed results (``study.collect_results``).
    base: the variant the others are compared with.
    metric: "test_sdr" (utterance SDR) or "museval_sdr"; variants whose
      seeds do not all have it are left out.
  """
  results = {name: seed_results for name, seed_results in results.items()
             if all(metric in r for r in seed_results)}
  base_tracks = per_track_average(results[base], metric) if base in results else None
  summary = {}
  for name, seed_results in sorted(results.items(), key=lambda kv: (kv[0] != base, kv[0])):
    summary[name] = _entry(seed_results, metric)
    if base_tracks is not None and name != base:
      summary[name].update(paired_delta(seed_results, base_tracks, metric))
  return summary


def _row(name: str, e: dict) -> list[str]:
  avg = f"{e['sdr_avg']:.2f}"
  if e.get("sdr_avg_seed_std") is not None:
    avg += f" ± {e['sdr_avg_seed_std']:.2f}"
  delta = "—"
  if e.get("delta_vs_base") is not None:
    delta = delta_text(e)
    if e["significant"]:
      delta = f"**{delta}**"
  step = f"{e['step_seconds']:.2f}" if np.isfinite(e["step_seconds"]) else "?"
  scored = ", ".join(f"{t} ({s if s is not None else '?'})" for t, s in zip(
      e.get("steps_trained", []), e.get("selected_steps", []))) or "?"
  return ([name] + [f"{e['sdr'][s]:.2f}" for s in SOURCES]
          + [avg, delta, f"{e['params']:,}", step, scored])


def results_table(summary: dict) -> str:
  """The study's Markdown table: one row per variant of ``summarize``'s output."""
  header = (["variant", *SOURCES, "avg", "Δ vs base [95% CI]", "params", "step s",
             "steps (scored)"])
  return markdown_table(header, (_row(name, e) for name, e in summary.items()))


def _save(fig, path: str) -> str:
  with staged_file(path, "a plot of the study", suffix=".png") as tmp:
    fig.savefig(tmp, dpi=120)
  return path


def _plot_sdr(summary: dict, path: str) -> str:
  import matplotlib.pyplot as plt
  names = list(summary)
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
  try:
    return _save(fig, path)
  finally:
    plt.close(fig)


def _plot_curves(results: dict, names: list[str], path: str) -> str:
  import matplotlib.pyplot as plt
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
  try:
    return _save(fig, path)
  finally:
    plt.close(fig)


def plot_study(summary: dict, results: dict, out_dir: str) -> list[str]:
  """``ablation_sdr.png`` (SDR and Δ per variant) and ``ablation_curves.png``."""
  import matplotlib
  matplotlib.use("Agg")
  return [_plot_sdr(summary, os.path.join(out_dir, "ablation_sdr.png")),
          _plot_curves(results, list(summary), os.path.join(out_dir, "ablation_curves.png"))]


def _scored_on(results: dict, summary: dict) -> str:
  first = next(iter(results.values()))[0]
  seconds = first.get("test_seconds")
  return (f"Scored on the {next(iter(summary.values()))['num_tracks']} test tracks of "
          f"{first.get('test_data', '?')}"
          + (f" (first {seconds:g} s of each)" if seconds else "") + ". ")


def report(workdir: str, log=print) -> dict | None:
  """Writes ``ablations.md``, ``ablations.json`` and the plots of a study.

  Returns the summary of the utterance SDR, or None when no variant has finished.
  """
  results = collect_results(workdir)
  if not results:
    return None
  summary = summarize(results)
  plots = plot_study(summary, results, workdir)
  text = (_scored_on(results, summary) + "Test SDR (dB; utterance SDR averaged over "
          "tracks). " + LEGEND + "\n\n" + results_table(summary) + "\n")
  payload = {"summary": summary, "results": results}
  museval_summary = summarize(results, metric="museval_sdr")
  if museval_summary:
    text += ("\nmuseval SDR (dB; BSS Eval v4, median over 1 s windows, averaged "
             "over tracks). " + LEGEND + "\n\n" + results_table(museval_summary) + "\n")
    payload["summary_museval"] = museval_summary
  write_text(os.path.join(workdir, "ablations.md"), text, "the study's tables")
  write_json(os.path.join(workdir, "ablations.json"), payload, "the study's numbers",
             sort_keys=True)
  log(text)
  log(f"wrote {os.path.join(workdir, 'ablations.md')}, ablations.json, "
      + ", ".join(os.path.basename(p) for p in plots))
  return summary
