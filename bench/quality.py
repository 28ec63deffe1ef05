"""Separation quality side by side: ours and the peers, each trained for the same time.

  .venv/bin/python -m bench.quality ours=configs/cpu_small.py:train.num_steps=4500 umx demucs \\
      --train-data data/bench48 --test-data data/bench-test-fluid --minutes 60

Every contender trains on the same corpus, for the same budget of training
time (validation excluded), with the same seeds, alone on one core (two
contenders at a time, one per core of ``--cores``; every one with the same
reused C heap, ``attnsep_jax.heap``); logs its validation SDR
against training time; separates the test tracks with the state of its best
validation SDR; and all are scored by one code path
(``attnsep_jax.evaluation.score_track``: BSS Eval v4, median over 1 s
windows, then over tracks), next to the mixture and the oracle IRM.  With a
test corpus rendered with another soundfont than the training corpus, the
score measures generalisation to instruments never heard in training.

Contenders, as NAME=SPEC or SPEC (named then after the config file or peer):
  CONFIG.py[:a.b=v[:c.d=w...]]  ours: train.py with that config and overrides
  umx[:key=v...]                 Open-Unmix by its recipe (bench/_quality_umx.py)
  demucs[:key=v...]              Demucs-v2-style by its recipe (bench/_quality_demucs.py)
Default: ours=configs/cpu_small.py umx demucs.  Our learning-rate schedule
follows train.num_steps unless optim.decay_clock=time ends it with the budget;
by steps, set train.num_steps to about what the budget allows.  A bag
(train.bag_size=K) spends the budget on its K members one after another,
train.num_steps each, and separates with their average.

Everything goes to WORKDIR/<name>/seed_<k>/ (logs, checkpoints, curves,
estimates, scores); WORKDIR/quality.{md,json,png} hold the table, all the
numbers and the validation curves.  Re-running the same command redoes
nothing that is finished; a run trained with other settings is refused, and a
changed test set (--test-*) is separated and scored again.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import io
import json
import logging
import multiprocessing
import os
import queue
import shutil
import subprocess
import sys

import numpy as np

from attnsep_jax import SAMPLE_RATE, SOURCES
from attnsep_jax import config as config_lib
from attnsep_jax import evaluation
from attnsep_jax import heap
from attnsep_jax.pairing import delta_text, paired_delta, per_track_average
from attnsep_jax.corpus.write import soundfont_names
from attnsep_jax.data.musdb import DataError, TrackIndex
from attnsep_jax.files import staged_file, write_text
from bench import _quality_demucs, _quality_umx, common, peers
from bench import _quality_files as files

TRAIN_PY = os.path.join(common.REPO_ROOT, "train.py")
PEER_RECIPES = {"umx": _quality_umx, "demucs": _quality_demucs}
PEER_LABELS = {"umx": "Open-Unmix", "demucs": "Demucs v2-style"}
DEFAULT_CONTENDERS = ["ours=configs/cpu_small.py", "umx", "demucs"]
# One thread for ours: XLA sizes its pools from the cores it may use, and
# these flags keep it at one whatever the affinity.
OURS_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
SETTINGS_FILE = "settings.json"
SCORES_FILE = "scores.json"
REFERENCES_FILE = "references.json"
ORDER = evaluation.MUSDB_TARGETS   # vocals, drums, bass, other: published tables' columns


class BenchError(Exception):
  """Bad input or a failed run; the message is the one line shown."""


def shown(path: str) -> str:
  """A path as printed: relative to the working directory (the repository)."""
  return os.path.relpath(path)


# ----------------------------------------------------------------- contenders
@dataclasses.dataclass(frozen=True)
class Contender:
  name: str
  kind: str                      # "ours" or a key of PEER_RECIPES
  spec: str
  config_path: str | None = None
  overrides: tuple = ()
  options: tuple = ()            # peers: resolved recipe options, as sorted items

  @property
  def label(self) -> str:
    """What it is, for the table: the config and overrides, or the peer and options."""
    if self.kind == "ours":
      return self.spec
    return ":".join([PEER_LABELS[self.kind]] + self.spec.split(":")[1:])


def parse_contender(text: str) -> Contender:
  """``NAME=SPEC`` or ``SPEC``; a ``=`` after the first ``:`` is an override."""
  head = text.split(":", 1)[0]
  name, spec = text.split("=", 1) if "=" in head else ("", text)
  base, *items = spec.split(":")
  try:
    if base.endswith(".py"):
      config_lib.load_config(base, items)   # bad file or override: fail now, not in an hour
      contender = Contender(name or os.path.splitext(os.path.basename(base))[0], "ours", spec,
                            config_path=os.path.abspath(base), overrides=tuple(items))
    elif base in PEER_RECIPES:
      contender = Contender(name or base, base, spec, options=peer_options(base, items))
    else:
      raise ValueError(f"unknown; give a config file (configs/*.py) or one of {', '.join(PEER_RECIPES)}")
  except ValueError as e:   # config_lib.ConfigError is one
    raise BenchError(f"contender {text!r}: {e}") from None
  if not contender.name.replace("_", "").replace("-", "").isalnum():
    raise BenchError(f"contender name {contender.name!r}: use letters, digits, - and _")
  return contender


def peer_options(kind: str, items) -> tuple:
  """A peer's recipe options from ``key=value`` items, checked by its recipe."""
  bad = [i for i in items if "=" not in i]
  if bad:
    raise ValueError(f"options look like key=value, got {bad[0]!r}")
  options = PEER_RECIPES[kind].check_options(dict(i.split("=", 1) for i in items))
  return tuple(sorted(options.items()))


# ----------------------------------------------------------------- corpora
def corpus_info(root: str) -> dict:
  """Path, and the soundfont and seed the built-in generator recorded."""
  info = {"path": shown(root)}
  path = os.path.join(root, "corpus.json")
  if os.path.exists(path):
    meta = files.read_json(path)
    info.update(soundfont=" + ".join(soundfont_names(meta)), seed=meta.get("seed"))
  return info


def track_entries(tracks, seconds: float | None = None) -> list[dict]:
  """{"name", "dir", "start", "frames"} of index tracks: whole, or their last
  ``seconds`` (where a song's arrangement is full; intros lack instruments)."""
  entries = []
  for t in tracks:
    frames = t.num_samples if seconds is None else min(int(round(seconds * t.sample_rate)),
                                                        t.num_samples)
    entries.append({"name": t.name, "dir": t.path, "start": t.num_samples - frames,
                    "frames": frames})
  return entries


def load_corpora(args) -> dict:
  try:
    train_index = TrackIndex(args.train_data)
    test_index = TrackIndex(args.test_data)
  except DataError as e:
    raise BenchError(str(e)) from None
  corpora = {"train": train_index.tracks("train", "train"),
             "valid": train_index.tracks("train", "valid"),
             "test": test_index.tracks("test")}
  for part, root in (("train", args.train_data), ("valid", args.train_data),
                     ("test", args.test_data)):
    if not corpora[part]:
      what = {"train": "training", "valid": "validation", "test": "test"}[part]
      raise BenchError(f"{root}: no {what} tracks")
  for index in (train_index, test_index):
    if index.sample_rate != SAMPLE_RATE:
      raise BenchError(f"{index.root}: sample rate {index.sample_rate} Hz; the contenders "
                       f"train at {SAMPLE_RATE} Hz")
  test = [t for t in track_entries(corpora["test"], args.test_seconds)
          if not silent_sources(t)][:args.test_tracks]
  if not test:
    raise BenchError(f"{args.test_data}: every test track has a silent source")
  return {"train_root": train_index.root, "test_root": test_index.root,
          "train_tracks": track_entries(corpora["train"]),
          "valid_tracks": track_entries(corpora["valid"]), "test_tracks": test}


def silent_sources(track: dict) -> list[str]:
  """Sources that are all zeros in the scored part of a test track.

  BSS Eval refuses a silent reference, so such a track (in full, or in its
  first --test-seconds) is left out of the test set, for every contender.
  """
  references = files.read_stems(track["dir"], SOURCES, track["start"], track["frames"])
  silent = [s for s, audio in zip(SOURCES, references) if not np.any(audio)]
  if silent:
    Context.log(f"test track {track['name']!r} left out: {', '.join(silent)} silent "
                "in the scored part")
  return silent


# ----------------------------------------------------------------- runs
@dataclasses.dataclass(frozen=True)
class Run:
  contender: Contender
  seed: int
  dir: str

  @property
  def label(self) -> str:
    return f"[{self.contender.name} seed {self.seed}]"

  def path(self, name: str) -> str:
    return os.path.join(self.dir, name)


def ours_overrides(run: Run, ctx) -> list[str]:
  """The contender's overrides plus the benchmark's shared settings."""
  return list(run.contender.overrides) + [
      f"data.root={ctx.corpora['train_root']}",
      f"train.time_budget_seconds={60.0 * ctx.args.minutes}",
      f"seed={run.seed}", f"data.seed={run.seed}"]


def training_settings(run: Run, ctx) -> dict:
  """What decides the trained model: a finished run counts only with these."""
  c = run.contender
  if c.kind == "ours":
    config = config_lib.load_config(c.config_path, ours_overrides(run, ctx))
    return {"kind": "ours", "config": json.loads(config_lib.to_json(config))}
  return {"kind": c.kind, "options": dict(c.options), "seed": run.seed,
          "train_data": ctx.corpora["train_root"],
          "budget_seconds": 60.0 * ctx.args.minutes,
          "valid_every_seconds": 60.0 * ctx.args.valid_minutes}


def test_settings(ctx) -> dict:
  """What is separated and scored: estimates and scores count only for these."""
  return {"data": ctx.corpora["test_root"], "seconds": ctx.args.test_seconds,
          "tracks": [[t["name"], t["start"], t["frames"]] for t in ctx.corpora["test_tracks"]]}


def differences(old, new, prefix: str = "") -> list[str]:
  if isinstance(old, dict) and isinstance(new, dict):
    return [d for key in sorted(set(old) | set(new))
            for d in differences(old.get(key), new.get(key), f"{prefix}{key}.")]
  return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def check_finished_settings(runs, ctx) -> None:
  """Refuses a workdir whose finished runs were trained with other settings."""
  for run in runs:
    if not os.path.exists(run.path(files.TRAIN_RESULT_FILE)):
      continue
    diffs = differences(files.read_json(run.path(SETTINGS_FILE)), training_settings(run, ctx))
    if diffs:
      raise BenchError(f"{shown(run.dir)} was trained with other settings ({'; '.join(diffs[:3])}); "
                       "use another --workdir, or delete that folder to train it again")


def write_job(run: Run, ctx) -> str:
  c = run.contender
  job = {"system": c.kind, "name": c.name, "seed": run.seed, "run_dir": run.dir,
         "train_dir": run.path("train"), "sources": list(SOURCES), "sample_rate": SAMPLE_RATE,
         "options": dict(c.options), "budget_seconds": 60.0 * ctx.args.minutes,
         "valid_every_seconds": 60.0 * ctx.args.valid_minutes,
         "train_tracks": ctx.corpora["train_tracks"], "valid_tracks": ctx.corpora["valid_tracks"],
         "test_tracks": ctx.corpora["test_tracks"], "test": test_settings(ctx)}
  files.write_json(run.path(files.JOB_FILE), job)
  return run.path(files.JOB_FILE)


# ----------------------------------------------------------------- training / separation
def stage_command(run: Run, stage: str, ctx) -> list[str]:
  c, job = run.contender, run.path(files.JOB_FILE)
  if c.kind != "ours":
    return common.module_command(ctx.peer_python, "_quality_peer", "--job", job, "--stage", stage)
  if stage == "separate":
    return common.module_command(sys.executable, "_quality_ours", "--job", job)
  return ([sys.executable, TRAIN_PY, "--config", c.config_path]
          + [f"--config.{o}" for o in ours_overrides(run, ctx)] + ["--workdir", run.path("train")])


def run_stage(run: Run, stage: str, core: int, ctx) -> None:
  log_path = run.path(f"{stage}.log")
  # Every contender, the PyTorch peers included, reuses its freed heap.
  env = dict(common.thread_env(1), XLA_FLAGS=OURS_XLA_FLAGS, GLIBC_TUNABLES=heap.GLIBC_TUNABLES)
  with open(log_path, "w") as log:
    proc = subprocess.run(["taskset", "-c", str(core)] + stage_command(run, stage, ctx),
                          stdout=log, stderr=subprocess.STDOUT, env=env, cwd=common.REPO_ROOT)
  if proc.returncode:
    with open(log_path) as f:
      tail = f.read().strip().splitlines()[-1:] or ["(no output)"]
    raise BenchError(f"{run.label} {stage} failed (exit {proc.returncode}): {tail[0]} "
                     f"(log: {shown(log_path)})")


def ours_curve(entries: list[dict], last_meta: dict) -> list[dict]:
  """Validation points of a train.py workdir against training time.

  The loop logs steps, not training time, at validation; the time is the
  last checkpoint's training time less the wall time since the validation,
  plus the validations run since (not training time).  A workdir trained in
  one go (the benchmark restarts unfinished runs) makes this exact.
  """
  valid = [e for e in entries if e.get("split") == "valid" and e.get("sdr") is not None]
  curve = []
  for k, entry in enumerate(valid):
    seconds = entry.get("train_seconds")
    if seconds is None:
      later = sum(v.get("seconds") or 0.0 for v in valid[k + 1:])
      seconds = last_meta["train_seconds"] - (last_meta["time"] - entry["time"]) + later
    curve.append({"minutes": seconds / 60.0, "step": entry["step"], "sdr": entry["sdr"],
                  **{key: v for key, v in entry.items() if key.startswith("sdr_")}})
  return curve


def last_checkpoint_meta(workdir: str) -> dict:
  """The meta of a train.py workdir's latest checkpoint (step, training seconds, time)."""
  from attnsep_jax.train.checkpoint import Checkpointer
  absl_logger = logging.getLogger("absl")   # Orbax warns that read-only means read-only
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  ckpt = Checkpointer(workdir, read_only=True)
  try:
    return ckpt.read_meta(ckpt.latest_step())
  finally:
    ckpt.close()
    absl_logger.setLevel(level)


def ours_train_result(run: Run) -> dict:
  """train_result.json of our run, from its train.py workdir.

  A bag's members trained one after another: its steps and training time
  are theirs added up, and its curve is theirs joined end to end in time
  (each point with its member's index and step).
  """
  from attnsep_jax.models.network import abstract_params, build_model, count_params
  from attnsep_jax.train.bag import bag_size, member_dir
  from attnsep_jax.train.logs import read_metrics
  workdir = run.path("train")
  with open(os.path.join(workdir, "config.json")) as f:
    config = config_lib.from_json(f.read())
  size = bag_size(config)
  members = [workdir] if size == 1 else [member_dir(workdir, i) for i in range(size)]
  curve, steps, seconds = [], 0, 0.0
  for index, member in enumerate(members):
    meta = last_checkpoint_meta(member)
    for point in ours_curve(read_metrics(member), meta):
      curve.append(dict(point, minutes=point["minutes"] + seconds / 60.0,
                        **({"member": index} if size > 1 else {})))
    steps, seconds = steps + int(meta["step"]), seconds + float(meta["train_seconds"])
  budget = config.train.time_budget_seconds
  return {"steps": steps, "train_seconds": seconds,
          "params": size * count_params(abstract_params(build_model(config.model))),
          "batch_size": config.data.batch_size, "segment_seconds": config.data.segment_seconds,
          "seconds_per_step": seconds / max(steps, 1),
          "stopped": "budget" if seconds >= budget else "train.num_steps",
          "num_steps": config.train.num_steps, "curve": curve,
          "selected": files.best_point(curve)}


def train_run(run: Run, core: int, ctx) -> None:
  # An unfinished run starts over: its curve and budget stay one clean run.
  shutil.rmtree(run.dir, ignore_errors=True)
  os.makedirs(run.dir)
  files.write_json(run.path(SETTINGS_FILE), training_settings(run, ctx))
  write_job(run, ctx)
  ctx.log(f"{run.label} training on core {core} for {ctx.args.minutes:g} min "
          f"(log: {shown(run.path('train.log'))})")
  run_stage(run, "train", core, ctx)
  if run.contender.kind == "ours":
    files.write_json(run.path(files.TRAIN_RESULT_FILE), ours_train_result(run))
  result = files.read_json(run.path(files.TRAIN_RESULT_FILE))
  best = result["selected"] or {}
  ctx.log(f"{run.label} trained: {result['steps']} steps in "
          f"{result['train_seconds'] / 60:.1f} min; best validation SDR "
          f"{best.get('sdr', float('nan')):.2f} dB at step {best.get('step')}")
  if result["stopped"] != "budget":
    ctx.log(f"{run.label} warning: stopped at train.num_steps={result['num_steps']} after "
            f"{result['train_seconds'] / 60:.1f} of {ctx.args.minutes:g} min; raise it "
            f"({run.contender.name}=CONFIG:train.num_steps=N) to use the whole budget")


def is_separated(run: Run, ctx) -> bool:
  path = run.path(files.SEPARATED_FILE)
  return os.path.exists(path) and files.read_json(path)["test"] == test_settings(ctx)


def separate_run(run: Run, core: int, ctx) -> None:
  if os.path.exists(run.path(files.SEPARATED_FILE)):
    ctx.log(f"{run.label} the test set changed; separating it again")
  for name in (files.SEPARATED_FILE, SCORES_FILE):
    with contextlib.suppress(FileNotFoundError):
      os.remove(run.path(name))
  shutil.rmtree(run.path(files.ESTIMATES_DIR), ignore_errors=True)
  write_job(run, ctx)
  run_stage(run, "separate", core, ctx)


def run_jobs(runs, ctx) -> list[str]:
  """Trains and separates what is not done, one run per core at a time;
  returns the failures' messages."""
  cores = queue.Queue()
  for core in ctx.args.cores:
    cores.put(core)

  def job(run):
    core = cores.get()
    try:
      if not os.path.exists(run.path(files.TRAIN_RESULT_FILE)):
        train_run(run, core, ctx)
      if not is_separated(run, ctx):
        separate_run(run, core, ctx)
    finally:
      cores.put(core)

  todo = [r for r in runs if not (os.path.exists(r.path(files.TRAIN_RESULT_FILE))
                                  and is_separated(r, ctx))]
  for run in runs:
    if run not in todo:
      ctx.log(f"{run.label} trained and separated earlier: {shown(run.dir)}")
  failures = []
  with concurrent.futures.ThreadPoolExecutor(len(ctx.args.cores)) as pool:
    for future in concurrent.futures.as_completed([pool.submit(job, r) for r in todo]):
      try:
        future.result()
      except BenchError as e:
        failures.append(str(e))
  return failures


# ----------------------------------------------------------------- scoring
def score_one(method: str, run_dir: str | None, track: dict, backend: str) -> dict:
  """museval's per-track JSON of one method on one test track (worker process)."""
  audio = files.read_stems(track["dir"], ("mixture",) + SOURCES, track["start"],
                           track["frames"])
  mixture, references = audio[0], audio[1:]
  if method == "model":
    estimates = files.read_estimates(run_dir, track["name"], SOURCES)
  elif method == "mixture":
    estimates = np.broadcast_to(mixture, references.shape).copy()
  else:
    estimates = evaluation.oracle_irm(mixture, references)
  if estimates.shape != references.shape:
    raise ValueError(f"{track['name']}: estimates {estimates.shape} vs references "
                     f"{references.shape}")
  return evaluation.score_track(track["name"], references, estimates, SAMPLE_RATE,
                                backend=backend)


def scores_current(path: str, ctx) -> bool:
  if not os.path.exists(path):
    return False
  scores = files.read_json(path)
  return scores["test"] == test_settings(ctx) and scores["backend"] == ctx.backend


def score_all(runs, ctx) -> None:
  """Scores every run and the reference methods that lack current scores."""
  targets = {run.path(SCORES_FILE): ("model", run.dir) for run in runs}
  for method in evaluation.REFERENCE_METHODS:
    targets[os.path.join(ctx.args.workdir, method, REFERENCES_FILE)] = (method, None)
  todo = {path: target for path, target in targets.items() if not scores_current(path, ctx)}
  if not todo:
    return
  tracks = ctx.corpora["test_tracks"]
  ctx.log(f"scoring {len(todo)} methods x {len(tracks)} test tracks ({ctx.backend}, "
          f"{ctx.args.score_workers} workers)")
  # Spawned workers: the parent has started JAX's threads, forking it is unsafe.
  pool = (concurrent.futures.ProcessPoolExecutor(
      ctx.args.score_workers, mp_context=multiprocessing.get_context("spawn"))
      if ctx.args.score_workers > 1 else contextlib.nullcontext())
  with pool:
    submit = pool.submit if ctx.args.score_workers > 1 else _run_now
    futures = {path: {t["name"]: submit(score_one, method, run_dir, t, ctx.args.backend)
                      for t in tracks} for path, (method, run_dir) in todo.items()}
    for path, by_track in futures.items():
      files.write_json(path, {"test": test_settings(ctx), "backend": ctx.backend,
                              "tracks": {name: f.result() for name, f in by_track.items()}})


def _run_now(fn, *args):
  future = concurrent.futures.Future()
  future.set_result(fn(*args))
  return future


# ----------------------------------------------------------------- report
def method_scores(path: str) -> dict:
  """SiSEC aggregate of a scores file: per-source SDR, their average, per track."""
  tracks = files.read_json(path)["tracks"]
  sdr = {s: evaluation.aggregate(list(tracks.values()))["median"][s]["SDR"] for s in SOURCES}
  per_track = {name: {s: m[s]["SDR"] for s in SOURCES}
               for name, m in ((n, evaluation.track_medians(t)) for n, t in tracks.items())}
  return {"sdr": sdr, "sdr_avg": float(np.mean(list(sdr.values()))), "per_track": per_track}


def summarise(contender: Contender, runs) -> dict:
  seeds = [{"seed": r.seed, **method_scores(r.path(SCORES_FILE)),
            "train": files.read_json(r.path(files.TRAIN_RESULT_FILE))} for r in runs]
  averages = [s["sdr_avg"] for s in seeds]
  return {
      "kind": contender.kind, "label": contender.label, "spec": contender.spec,
      "options": dict(contender.options) or None,
      "sdr": {s: float(np.mean([r["sdr"][s] for r in seeds])) for s in SOURCES},
      "sdr_avg": float(np.mean(averages)),
      "sdr_avg_std": float(np.std(averages, ddof=1)) if len(seeds) > 1 else None,
      "sdr_avg_range": [min(averages), max(averages)],
      "params": seeds[0]["train"]["params"],
      "batch_size": seeds[0]["train"]["batch_size"],
      "steps": [r["train"]["steps"] for r in seeds],
      "seconds_per_step": float(np.mean([r["train"]["seconds_per_step"] for r in seeds])),
      "best_valid_sdr": [(r["train"]["selected"] or {}).get("sdr") for r in seeds],
      "seeds": seeds}


def table_rows(summaries: dict, references: dict) -> list[dict]:
  rows = []
  for name, s in summaries.items():
    avg = f"{s['sdr_avg']:.2f}" + (f" ± {s['sdr_avg_std']:.2f}" if s["sdr_avg_std"] is not None else "")
    valid = [v for v in s["best_valid_sdr"] if v is not None]
    rows.append({"contender": f"{name} ({s['label']})",
                 **{src: f"{s['sdr'][src]:.2f}" for src in ORDER}, "avg": avg,
                 "steps": f"{np.mean(s['steps']):.0f}", "batch": str(s["batch_size"]),
                 "s/step": f"{s['seconds_per_step']:.2f}",
                 "params (M)": f"{s['params'] / 1e6:.2f}",
                 "best valid SDR": f"{np.mean(valid):.2f}" if valid else "?"})
  for method, label in (("mixture", "mixture (reference)"),
                        ("oracle_irm", "oracle IRM (upper bound)")):
    r = references[method]
    rows.append({"contender": label, **{src: f"{r['sdr'][src]:.2f}" for src in ORDER},
                 "avg": f"{r['sdr_avg']:.2f}"})
  return rows


def table_title(ctx) -> str:
  args, c = ctx.args, ctx.corpora
  train, test = corpus_info(c["train_root"]), corpus_info(c["test_root"])
  statistic = (f"BSS Eval v4 via {ctx.backend}: median over 1 s windows, median over tracks; "
               "avg: mean of the four sources"
               + ("; mean ± std over seeds" if len(args.seeds) > 1 else ""))
  scored = (f"{len(c['test_tracks'])} test tracks of {os.path.basename(c['test_root'])} "
            f"(soundfont {test.get('soundfont', '?')}"
            + (f", last {args.test_seconds:g} s of each" if args.test_seconds else "") + ")")
  trained = (f"{os.path.basename(c['train_root'])} (soundfont {train.get('soundfont', '?')}, "
             f"{len(c['train_tracks'])} tracks + {len(c['valid_tracks'])} for validation)")
  seeds = ", ".join(str(s) for s in args.seeds)
  return (f"Test SDR (dB; {statistic}) on {scored}, of each contender trained "
          f"{args.minutes:g} min on one core on {trained}, seeds {seeds}.")


def paired(summaries: dict) -> dict:
  """Each later contender against the first, per test song (seeds averaged):
  the mean paired difference, its 95% bootstrap interval over songs, and how
  many songs it wins; a difference between medians alone hides the noise."""
  names = list(summaries)
  if len(names) < 2:
    return {}
  first = per_track_average(summaries[names[0]]["seeds"], "per_track")
  return {name: paired_delta(summaries[name]["seeds"], first, "per_track")
          for name in names[1:]}


def paired_rows(differences: dict, first: str) -> list[dict]:
  rows = []
  for name, d in differences.items():
    rows.append({"contender": f"{name} - {first}",
                 **{src: f"{d['delta_by_source'][src]:+.2f}" for src in ORDER},
                 "avg [95% CI]": delta_text(d),
                 "songs better": f"{d['tracks_better']}/{d['tracks_compared']}"})
  return rows


def markdown(summaries: dict, references: dict, differences: dict, ctx) -> str:
  columns = ["contender", *ORDER, "avg", "steps", "batch", "s/step", "params (M)",
             "best valid SDR"]
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    common.print_table(table_rows(summaries, references), columns, title=table_title(ctx))
    if differences:
      first = next(iter(summaries))
      common.print_table(
          paired_rows(differences, first),
          ["contender", *ORDER, "avg [95% CI]", "songs better"],
          title=f"Per test song, against {first} (dB; mean paired difference of the "
                "song's SDR, seeds averaged; 95% bootstrap interval over songs):")
  return out.getvalue().strip() + "\n"


def plot_curves(summaries: dict, path: str, ctx) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(8, 4.5 + 0.25 * len(summaries)))
  for i, (name, summary) in enumerate(summaries.items()):
    for j, seed in enumerate(summary["seeds"]):
      curve = seed["train"]["curve"]
      # A bag's members are separate models: one line each, none joining them.
      for k, member in enumerate(sorted({p.get("member", 0) for p in curve})):
        points = [p for p in curve if p.get("member", 0) == member]
        ax.plot([p["minutes"] for p in points], [p["sdr"] for p in points], color=f"C{i}",
                marker="o", markersize=3, linestyle="-" if j == 0 else "--",
                label=f"{name} ({summary['label']})" if j == k == 0 else None)
  ax.set_xlim(left=0)
  ax.set_xlabel("training minutes (one core, validation excluded)")
  ax.set_ylabel("validation SDR (dB)")
  ax.set_title(f"Validation SDR on the {len(ctx.corpora['valid_tracks'])} validation tracks of "
               f"{os.path.basename(ctx.corpora['train_root'])}", fontsize=10)
  ax.grid(alpha=0.3)
  # Below the axes: contender labels carry their specs and would hide points.
  ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
  fig.tight_layout()
  with staged_file(path, "the validation curves", suffix=".png") as tmp:
    fig.savefig(tmp, dpi=120)
  plt.close(fig)


def report(runs, ctx) -> None:
  workdir = ctx.args.workdir
  summaries = {}
  for contender in ctx.contenders:
    summaries[contender.name] = summarise(contender, [r for r in runs if r.contender == contender])
  references = {m: method_scores(os.path.join(workdir, m, REFERENCES_FILE))
                for m in evaluation.REFERENCE_METHODS}
  differences = paired(summaries)
  table = markdown(summaries, references, differences, ctx)
  plot = os.path.join(workdir, "quality.png")
  plot_curves(summaries, plot, ctx)
  write_text(os.path.join(workdir, "quality.md"), table, "the quality table")
  print(table)
  args = ctx.args
  common.write_json(args.json or shown(os.path.join(workdir, "quality.json")), {
      "machine": ctx.machine,
      "protocol": {"budget_minutes": args.minutes, "seeds": args.seeds, "cores": args.cores,
                   "valid_minutes_peers": args.valid_minutes, "backend": ctx.backend,
                   "test_seconds": args.test_seconds,
                   "environment": {"XLA_FLAGS": OURS_XLA_FLAGS,
                                   "GLIBC_TUNABLES": heap.GLIBC_TUNABLES},
                   "test_tracks": [t["name"] for t in ctx.corpora["test_tracks"]],
                   "statistic": "BSS Eval v4 SDR, median over 1 s windows, median over tracks"},
      "corpora": {"train": corpus_info(ctx.corpora["train_root"]),
                  "test": corpus_info(ctx.corpora["test_root"])},
      "contenders": summaries, "paired_vs_first": differences,
      "references": references, "table": table,
      "plot": shown(plot)})


# ----------------------------------------------------------------- main
@dataclasses.dataclass
class Context:
  args: argparse.Namespace
  contenders: list
  corpora: dict
  backend: str
  peer_python: str | None = None
  machine: dict | None = None

  @staticmethod
  def log(message: str) -> None:
    sys.stderr.write(f"# {message}\n")   # one write: lines from two jobs never interleave
    sys.stderr.flush()


def check_peer_venv(args) -> str:
  python = peers.peer_python(args.peer_venv)
  if not os.path.exists(python):
    if not args.setup_peer_venv:
      raise BenchError(f"no peer venv at {args.peer_venv}; pass --setup-peer-venv to create it")
    peers.setup_peer_venv(args.peer_venv)
  probe = ("import importlib.util as u; print(' '.join(m for m in %r if u.find_spec(m) is None))"
           % (["torch", "demucs", "openunmix", "soundfile"],))
  missing = subprocess.run([python, "-c", probe], capture_output=True, text=True).stdout.split()
  if missing:
    raise BenchError(f"the peer venv {args.peer_venv} lacks {', '.join(missing)} "
                     f"(add it: {python} -m pip install {' '.join(missing)})")
  return python


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("contenders", nargs="*", help="NAME=SPEC or SPEC (see above)")
  parser.add_argument("--train-data", default="data/bench48", help="training corpus")
  parser.add_argument("--test-data", default="data/bench-test-fluid",
                      help="corpus whose test subset is scored (another soundfont)")
  parser.add_argument("--minutes", type=float, default=60.0,
                      help="training time of every contender (validation excluded)")
  parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
  parser.add_argument("--workdir", default="runs/quality", help="everything goes here")
  parser.add_argument("--cores", default=None,
                      help="comma-separated cores, one contender on each at a time "
                      "(default: the first two this process may use)")
  parser.add_argument("--valid-minutes", type=float, default=5.0,
                      help="peers validate every this many training minutes (ours: its "
                      "config's train.eval_every_steps)")
  parser.add_argument("--test-seconds", type=float, default=None,
                      help="score only the last N seconds of each test track (quick runs)")
  parser.add_argument("--test-tracks", type=int, default=None,
                      help="score only the first N test tracks")
  parser.add_argument("--backend", default="jax", choices=evaluation.BACKENDS,
                      help="BSS Eval v4 implementation: attnsep_jax.bsseval (default) or "
                      "museval itself (slow)")
  parser.add_argument("--score-workers", type=int, default=None,
                      help="scoring processes (default: 1 with --backend jax, else one per "
                      "core of --cores)")
  parser.add_argument("--peer-venv", default=os.path.join(common.REPO_ROOT, ".peer-venv"),
                      help="virtual environment with torch, demucs, openunmix, soundfile")
  parser.add_argument("--setup-peer-venv", action="store_true",
                      help="create --peer-venv when it does not exist")
  parser.add_argument("--json", default=None, help="results JSON (default: WORKDIR/quality.json)")
  args = parser.parse_args(argv)
  try:
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.cores = ([int(c) for c in args.cores.split(",")] if args.cores
                  else sorted(os.sched_getaffinity(0))[:2])
  except ValueError:
    parser.error("--seeds and --cores take integers separated by commas")
  if not args.seeds or args.minutes <= 0 or args.valid_minutes <= 0:
    parser.error("--seeds must name a seed; --minutes and --valid-minutes must be > 0")
  # BSS Eval in JAX scores in this process; museval wants a process per core.
  args.score_workers = args.score_workers or (1 if args.backend == "jax" else len(args.cores))
  args.workdir = os.path.abspath(args.workdir)
  return args


def setup(args) -> tuple[Context, list]:
  contenders = [parse_contender(t) for t in args.contenders or DEFAULT_CONTENDERS]
  names = [c.name for c in contenders]
  if len(set(names)) < len(names):
    raise BenchError(f"contender names must differ, got {', '.join(names)} (use NAME=SPEC)")
  if shutil.which("taskset") is None:
    raise BenchError("taskset (util-linux) is needed to pin each contender to its core")
  ctx = Context(args, contenders, load_corpora(args), args.backend)
  if any(c.kind != "ours" for c in contenders):
    ctx.peer_python = check_peer_venv(args)
  runs = [Run(c, seed, os.path.join(args.workdir, c.name, f"seed_{seed}"))
          for seed in args.seeds for c in contenders]
  check_finished_settings(runs, ctx)
  return ctx, runs


def main(argv=None) -> int:
  args = parse_args(argv)
  try:
    ctx, runs = setup(args)
  except BenchError as e:
    print(f"quality.py: error: {e}", file=sys.stderr)
    return 2
  common.warn_if_busy()
  ctx.machine = common.machine_info()
  failures = run_jobs(runs, ctx)
  if failures:
    for message in failures:
      print(f"quality.py: error: {message}", file=sys.stderr)
    return 1
  score_all(runs, ctx)
  report(runs, ctx)
  return 0


if __name__ == "__main__":
  sys.exit(main())
