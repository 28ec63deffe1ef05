"""Compares evaluations per song: ``attnsep compare BASE OTHER [OTHER ...]``.

Each argument is an output folder of ``attnsep evaluate`` (its per-track
museval JSON).  For every folder the table gives the SDR per source (median
over each track's windows, mean over tracks, and the average of the
sources' medians over tracks, the figure ``attnsep evaluate`` reports); for
each later folder, its
paired difference to BASE on the tracks both scored: per source, averaged
over sources with a 95% bootstrap interval over tracks, and how many tracks
gained.  Settings that differ between the folders' ``settings.json`` are
listed, so that what was compared is on the screen: two inference settings
on one checkpoint, two checkpoints, or a model and the mixture (``--method``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np

from attnsep_jax import SOURCES, cli, files
from attnsep_jax.evaluate_cli import SETTINGS
from attnsep_jax.evaluation import track_medians
from attnsep_jax.pairing import delta_text, paired_delta, per_track_average
from attnsep_jax.tables import markdown_table


class CompareError(Exception):
  """Bad input for a comparison; the message is one line."""


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog=cli.prog("compare"),
                                   description=__doc__.splitlines()[0])
  parser.add_argument("folders", nargs="+", metavar="FOLDER",
                      help="attnsep evaluate output folders; the first is the base")
  parser.add_argument("--method", default="model",
                      help="which scores of each folder: model (default), mixture or oracle_irm")
  parser.add_argument("--subset", choices=("train", "test"), default="test")
  parser.add_argument("--json", default=None, metavar="FILE",
                      help="also write the table's numbers as JSON")
  return parser


def track_sdrs(folder: str, method: str, subset: str) -> dict[str, dict[str, float]]:
  """track -> {source: SDR} from the folder's per-track museval JSON; tracks
  with an undefined SDR (a silent reference) are left out."""
  paths = sorted(glob.glob(os.path.join(glob.escape(folder), method, subset, "*.json")))
  if not paths:
    raise CompareError(f"{folder} has no {method} scores of the {subset} subset "
                       f"({os.path.join(method, subset, '*.json')}); is it an attnsep "
                       "evaluate output folder?")
  sdrs = {}
  for path in paths:
    try:
      with open(path) as f:
        medians = track_medians(json.load(f))
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise CompareError(f"{path} is not a museval track file ({e})") from None
    values = {s: medians.get(s, {}).get("SDR", float("nan")) for s in SOURCES}
    if all(np.isfinite(v) for v in values.values()):
      sdrs[os.path.splitext(os.path.basename(path))[0]] = values
  if not sdrs:
    raise CompareError(f"{folder}: no track has a defined SDR for every source")
  return sdrs


def settings_differences(folders: list[str]) -> list[str]:
  """``key: value in each folder`` for each setting that is not the same in all."""
  settings = []
  for folder in folders:
    path = os.path.join(folder, SETTINGS)
    try:
      with open(path) as f:
        settings.append(json.load(f))
    except (OSError, ValueError):
      settings.append({})
  keys = sorted(set().union(*settings))
  return [f"{k}: {' | '.join(repr(s.get(k)) for s in settings)}" for k in keys
          if len({json.dumps(s.get(k)) for s in settings}) > 1]


def compare(folders: list[str], method: str = "model", subset: str = "test") -> dict:
  """{"folders": {folder: {"sdr", "sdr_avg", "sdr_avg_median", "tracks"}}, "paired": {...}}."""
  # One "seed" per folder, in the form the pairing functions take.
  scores = {folder: [{"sdr": track_sdrs(folder, method, subset)}] for folder in folders}
  base = folders[0]
  base_tracks = per_track_average(scores[base], "sdr")
  result = {"method": method, "subset": subset, "folders": {}, "paired": {}}
  for folder, seeds in scores.items():
    tracks = per_track_average(seeds, "sdr")
    table = np.stack(list(tracks.values()))                   # (tracks, sources)
    result["folders"][folder] = {"sdr": dict(zip(SOURCES, table.mean(axis=0).tolist())),
                                 "sdr_avg": float(table.mean()),
                                 "sdr_avg_median": float(np.median(table, axis=0).mean()),
                                 "tracks": len(tracks)}
    if folder != base:
      if not set(tracks) & set(base_tracks):
        raise CompareError(f"{folder} and {base} have no scored track in common")
      result["paired"][folder] = paired_delta(seeds, base_tracks, "sdr")
  return result


def report(result: dict, differences: list[str]) -> str:
  rows = [[folder, *(f"{e['sdr'][s]:.2f}" for s in SOURCES), f"{e['sdr_avg']:.2f}",
           f"{e['sdr_avg_median']:.2f}", e["tracks"]] for folder, e in result["folders"].items()]
  text = ["SDR per source and avg: mean over tracks; avg (median): the sources' medians "
          "over tracks, averaged, as attnsep evaluate reports.\n",
          markdown_table(["folder", *SOURCES, "avg", "avg (median)", "tracks"], rows)]
  base = next(iter(result["folders"]))
  if result["paired"]:
    rows = []
    for folder, d in result["paired"].items():
      rows.append([folder, *(f"{d['delta_by_source'][s]:+.2f}" for s in SOURCES),
                   delta_text(d), f"{d['tracks_better']}/{d['tracks_compared']}"])
    text += [f"\nPer track, against {base} (dB; mean paired difference, 95% bootstrap "
             "interval over tracks):\n",
             markdown_table(["folder", *SOURCES, "avg [95% CI]", "tracks better"], rows)]
  text.append("\nSettings that differ: " + ("; ".join(differences) if differences
                                             else "none recorded"))
  return "\n".join(text)


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  try:
    if len(set(args.folders)) != len(args.folders):
      raise CompareError("a folder is named twice")
    result = compare(args.folders, args.method, args.subset)
    differences = settings_differences(args.folders)
    print(report(result, differences))
    if args.json:
      files.write_json(args.json, {**result, "settings_differences": differences},
                       "the comparison")
  except (CompareError, OSError) as e:
    return cli.fail("compare", e)
  return 0
