"""Scores a separator on MUSDB18/-HQ (or the built-in corpus) with BSS Eval v4:
``attnsep evaluate --checkpoint DIR --musdb ROOT [--is-wav]``.

Separates every track of the subset with the shared chunked inference and
scores it (``evaluation.separate_and_score``: museval's numbers from
``attnsep_jax.bsseval`` in this process by default, or museval itself in
worker processes).  Writes museval's per-track JSON
(``OUT/<method>/<subset>/<track>.json``), the aggregate (``OUT/results.json``),
a Markdown table (``OUT/results.md``) with the mixture and oracle-IRM
reference rows and the published MUSDB18 rows, and two pictures
(``OUT/plots/``): the per-track SDR of each source, and the spectrograms of
one track's mixture, references and estimates.  Tracks already scored in OUT
are skipped unless ``--force``, so an interrupted evaluation resumes; OUT's
``settings.json`` records what the model's scores depend on (the parameters'
checksum, the inference settings but the batch size, ``--seconds``), and a
run with other settings is refused rather than mixed with them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys

import numpy as np

from attnsep_jax import SOURCES, cli, files
from attnsep_jax.cli import inference_options

PLOTS = "plots"
SETTINGS = "settings.json"


class EvaluationError(Exception):
  """Bad input for an evaluation; the message is one line."""


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog=cli.prog("evaluate"),
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", required=True,
                      help="training workdir (attnsep train) or export (attnsep export)")
  parser.add_argument("--musdb", required=True, help="MUSDB18(-HQ) root or built-in corpus")
  parser.add_argument("--is-wav", action="store_true",
                      help="wav folders (MUSDB18-HQ layout) instead of .stem.mp4")
  parser.add_argument("--subset", choices=("train", "test"), default="test")
  parser.add_argument("--tracks", nargs="*", default=None, help="only these track names")
  parser.add_argument("--out", default=None,
                      help="output folder (default: CHECKPOINT/museval-SUBSET)")
  parser.add_argument("--backend", choices=("jax", "museval"), default="jax",
                      help="BSS Eval v4 implementation: attnsep_jax.bsseval (museval's "
                      "numbers, in this process) or museval itself (slow)")
  parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                      help="museval worker processes (--backend museval)")
  parser.add_argument("--check-museval", type=float, default=0.0, metavar="SECONDS",
                      help="score the first SECONDS of the first scored track with both "
                      "backends and warn if they disagree by more than 0.01 dB")
  parser.add_argument("--seconds", type=float, default=None,
                      help="score only the first N seconds of each track (quick runs)")
  parser.add_argument("--no-references", action="store_true",
                      help="skip the mixture and oracle-IRM reference rows")
  parser.add_argument("--plot-track", default=None, metavar="NAME",
                      help="the track whose spectrograms are drawn (default: the first)")
  parser.add_argument("--force", action="store_true", help="re-score scored tracks")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  inference_options.add_arguments(parser)
  return parser


def main(argv=None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  args.inference = inference_options.overrides(parser, args)
  from attnsep_jax.data.musdb import DataError
  from attnsep_jax.export import ModelLoadError
  try:
    return evaluate(args)
  except (ModelLoadError, DataError, EvaluationError, files.WriteError) as e:
    return cli.fail("evaluate", e)


def check_museval(references: np.ndarray, estimates: np.ndarray, rate: int, seconds: float,
                  label: str) -> bool:
  """Both BSS Eval backends on the first ``seconds``; prints the differences
  and a warning per disagreement.  True when they agree."""
  from attnsep_jax.bsseval.check import cross_check
  from attnsep_jax.evaluation import MUSDB_TARGETS
  frames = int(seconds * rate)
  order = [SOURCES.index(t) for t in MUSDB_TARGETS]
  differences, problems = cross_check(references[order, :frames], estimates[order, :frames],
                                      rate)
  print(f"museval cross-check, first {seconds:g} s of {label}: max |difference| "
        + ", ".join(f"{m} {d:.1e}" for m, d in differences.items()) + " dB", flush=True)
  for problem in problems:
    print(f"{cli.prog('evaluate')}: warning: BSS Eval backends disagree: {problem}",
          file=sys.stderr)
  return not problems


def _select_tracks(index, args, rate: int) -> list:
  tracks = index.tracks(args.subset)
  if args.tracks:
    missing = sorted(set(args.tracks) - {t.name for t in tracks})
    if missing:
      raise EvaluationError(f"no track(s) {', '.join(missing)} in the {args.subset} subset")
    tracks = [t for t in tracks if t.name in args.tracks]
  if not tracks:
    raise EvaluationError(f"no tracks in the {args.subset} subset of {args.musdb}")
  for track in tracks:
    if track.sample_rate != rate:
      raise EvaluationError(f"{track.name}: sample rate {track.sample_rate} Hz, the model "
                            f"expects {rate}")
  if args.plot_track and args.plot_track not in {t.name for t in tracks}:
    raise EvaluationError(f"--plot-track {args.plot_track!r} is not among the evaluated tracks")
  return tracks


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where an evaluation writes."""
  out: str
  subset: str

  def scores(self, method: str, track: str) -> str:
    """museval's per-track JSON (each ``OUT/<method>`` is a museval output folder)."""
    return os.path.join(self.out, method, self.subset, f"{track}.json")

  def sdr_plot(self) -> str:
    return os.path.join(self.out, PLOTS, "sdr_per_track.png")

  def spectrograms(self, track: str) -> str:
    name = re.sub(r"[^\w.-]+", "_", track).strip("_") or "track"
    return os.path.join(self.out, PLOTS, f"spectrograms-{name}.png")


@dataclasses.dataclass(frozen=True)
class Excerpt:
  """The part of one track whose spectrograms are drawn."""
  name: str
  start_seconds: float
  mixture: np.ndarray
  references: np.ndarray
  estimates: np.ndarray

  @classmethod
  def of(cls, result, sample_rate: int) -> "Excerpt":
    from attnsep_jax.evaluation_plots import middle_excerpt
    cut = middle_excerpt(len(result.mixture), sample_rate)
    return cls(result.name, cut.start / sample_rate, result.mixture[cut].copy(),
               result.references[:, cut].copy(), result.estimates[:, cut].copy())


@dataclasses.dataclass
class Evaluation:
  """One run of the command: what it scores, with what, and where it writes."""
  args: argparse.Namespace
  model: object
  params: object
  rate: int
  inference: dict
  index: object
  tracks: list
  layout: Layout
  methods: tuple[str, ...]
  plot_track: str

  def read(self, tracks):
    """(name, mixture, references) of each track, read when needed."""
    for track in tracks:
      frames = None if self.args.seconds is None else min(
          int(self.args.seconds * track.sample_rate), track.num_samples)
      audio = self.index.read(track, 0, frames, stems=("mixture",) + SOURCES)
      yield track.name, audio[0], audio[1:]

  def separate_and_score(self, tracks, method: str = "model", bss_eval: bool = True):
    from attnsep_jax.evaluation import separate_and_score
    return separate_and_score(self.model, self.params, self.read(tracks),
                              sample_rate=self.rate, inference=self.inference, method=method,
                              backend=self.args.backend, workers=self.args.workers,
                              bss_eval=bss_eval)


def _start(args) -> Evaluation:
  from attnsep_jax.data.musdb import TrackIndex
  from attnsep_jax.evaluation import METHODS
  from attnsep_jax.export import load_model
  from attnsep_jax.inference import post_filter_problem

  config, model, params = load_model(args.checkpoint)
  rate = int(config.data.sample_rate)
  inference = {**dict(config.inference), **args.inference}
  problem = post_filter_problem(inference)
  if problem:
    raise EvaluationError(problem)
  index = TrackIndex(args.musdb, is_wav=args.is_wav)
  tracks = _select_tracks(index, args, rate)
  layout = Layout(args.out or os.path.join(args.checkpoint, f"museval-{args.subset}"),
                  args.subset)
  methods = ("model",) if args.no_references else METHODS
  return Evaluation(args, model, params, rate, inference, index, tracks, layout, methods,
                    args.plot_track or tracks[0].name)


def scoring_settings(run: Evaluation) -> dict:
  """What the model's scores in OUT depend on, besides the tracks (as JSON reads back)."""
  from attnsep_jax.train.checkpoint import tree_checksum
  # The batch only groups segments into model calls, each segment separated
  # on its own: the stems do not depend on it, so it may change on resume.
  settings = {"params_checksum": tree_checksum(run.params), "seconds": run.args.seconds,
              **{f"inference.{k}": v for k, v in sorted(run.inference.items())
                 if k != "batch_size"}}
  return json.loads(json.dumps(settings))


def _check_settings(run: Evaluation, settings: dict) -> None:
  """Refuses to add scores to an OUT scored with other settings (unless --force)."""
  path = os.path.join(run.layout.out, SETTINGS)
  if not os.path.exists(path):
    return
  try:
    earlier = _load_json(path)
  except (OSError, ValueError) as e:
    raise EvaluationError(f"{path} is unreadable ({e}); remove it or choose another --out")
  # A setting missing from an OUT scored by an older version did not exist
  # then: it is unchanged if it is off (0, False, None) now.
  changed = [f"{k} {earlier.get(k)!r} -> {v!r}" for k, v in settings.items()
             if earlier.get(k) != v and (k in earlier or v)]
  if changed and not run.args.force:
    raise EvaluationError(f"{run.layout.out} holds scores made with other settings "
                          f"({'; '.join(changed)}); pass --force to re-score every track, "
                          "or choose another --out")


def evaluate(args) -> int:
  """The command's work, once its arguments are parsed; returns the exit status."""
  run = _start(args)
  layout = run.layout
  settings, settings_path = scoring_settings(run), os.path.join(layout.out, SETTINGS)
  _check_settings(run, settings)
  if not os.path.exists(settings_path):   # a new OUT: recorded before its first score
    files.write_json(settings_path, settings, "the scoring settings")
  todo = {m: [t for t in run.tracks
              if args.force or not os.path.exists(layout.scores(m, t.name))]
          for m in run.methods}
  count = sum(map(len, todo.values()))
  print(f"{len(run.tracks)} tracks x {len(run.methods)} methods; {count} to score "
        f"({len(run.tracks) * len(run.methods) - count} already in {layout.out})", flush=True)
  excerpt = _score(run, todo, count)
  if args.force:
    # Written after a forced re-scoring, not before: an interrupted one is
    # refused on resume instead of mixing old scores with new.
    files.write_json(settings_path, settings, "the scoring settings")
  if excerpt is None and (args.force or not os.path.exists(layout.spectrograms(run.plot_track))):
    # Scored in an earlier run: separate it again, for its picture only.
    plotted = [t for t in run.tracks if t.name == run.plot_track]
    excerpt = Excerpt.of(next(run.separate_and_score(plotted, bss_eval=False)), run.rate)
  _report(run, excerpt)
  return 0


def _score(run: Evaluation, todo: dict, count: int) -> Excerpt | None:
  """Scores the tracks ``todo`` lists per method and writes their JSON; returns
  the plot track's excerpt when the model separated it here."""
  from tqdm import tqdm
  bar = tqdm(total=count, unit="score", disable=run.args.quiet, file=sys.stderr)
  to_check, excerpt = run.args.check_museval, None
  for method, tracks in todo.items():
    for result in run.separate_and_score(tracks, method):
      if to_check:
        check_museval(result.references, result.estimates, run.rate, to_check,
                      f"{result.name} ({method})")
        to_check = 0.0
      if result.bss is None:
        print(f"{cli.prog('evaluate')}: warning: {result.name} ({method}) not scored: "
              f"{result.bss_error}", file=sys.stderr)
      else:
        files.write_json(run.layout.scores(method, result.name), result.museval_json(),
                         f"the {method} scores of '{result.name}'")
      if method == "model" and result.name == run.plot_track:
        excerpt = Excerpt.of(result, run.rate)
      bar.update()
  bar.close()
  return excerpt


def _load_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def _describe(run: Evaluation) -> tuple[str, bool]:
  """What was evaluated, in words; and whether it is MUSDB18's test set."""
  args = run.args
  is_builtin = os.path.exists(os.path.join(args.musdb, "corpus.json"))
  is_musdb = (not is_builtin and args.subset == "test" and len(run.tracks) == 50
              and not args.seconds)
  label = (f"{args.subset} subset of {args.musdb}, {len(run.tracks)} tracks"
           + (f", first {args.seconds:g} s of each" if args.seconds else "")
           + (" (built-in corpus)" if is_builtin else ""))
  return label, is_musdb


def _draw(run: Evaluation, scored: dict, label: str, excerpt: Excerpt | None) -> dict:
  """The pictures: what each shows -> its path relative to the output folder."""
  from attnsep_jax.evaluation import track_medians
  from attnsep_jax.evaluation_plots import plot_sdr_per_track, plot_spectrograms

  per_track = {m: {name: {s: v["SDR"] for s, v in track_medians(j).items()}
                   for name, j in jsons.items()} for m, jsons in scored.items()}
  pictures = {"the per-track SDR of each source": plot_sdr_per_track(
      per_track, run.layout.sdr_plot(), f"SDR per track; {label}")}
  spectrograms = run.layout.spectrograms(run.plot_track)
  if excerpt is not None:
    plot_spectrograms(excerpt.name, excerpt.mixture, excerpt.references, excerpt.estimates,
                      run.rate, spectrograms, excerpt.start_seconds)
  if os.path.exists(spectrograms):
    pictures[f"spectrograms of {run.plot_track}: mixture, references, estimates"] = \
        spectrograms
  return {what: os.path.relpath(path, run.layout.out) for what, path in pictures.items()}


def _report(run: Evaluation, excerpt: Excerpt | None) -> None:
  """Aggregates the per-track JSON into results.json/.md and draws the pictures."""
  from attnsep_jax.evaluation import aggregate, results_table

  layout = run.layout
  scored = {m: {t.name: _load_json(layout.scores(m, t.name)) for t in run.tracks
                if os.path.exists(layout.scores(m, t.name))} for m in run.methods}
  results = {m: aggregate(list(jsons.values())) for m, jsons in scored.items() if jsons}
  label, is_musdb = _describe(run)
  pictures = _draw(run, scored, label, excerpt)
  table = results_table(results, label, is_musdb)
  mean_table = results_table(results, label, is_musdb, statistic="mean")
  figures = "\n\n".join(f"![{what}]({path})" for what, path in pictures.items())
  files.write_json(os.path.join(layout.out, "results.json"),
                   {"checkpoint": os.path.abspath(run.args.checkpoint), "data": label,
                    "backend": run.args.backend, "results": results, "figures": pictures},
                   "the aggregate scores")
  files.write_text(os.path.join(layout.out, "results.md"),
                   f"{table}\n\n{mean_table}\n\n## Figures\n\n{figures}\n",
                   "the results table")
  print(table)
  print(f"\nwritten to {layout.out}:\n  results.md, results.json: the tables above\n"
        + "".join(f"  {path}: {what}\n" for what, path in pictures.items())
        + f"  <method>/{run.args.subset}/<track>.json: museval's per-track scores")
