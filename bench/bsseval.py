"""BSS Eval v4: ours (attnsep_jax.bsseval) against museval on the same stems.

4-stem stereo tracks of each ``--lengths`` (built-in corpus tracks end to end,
or synthetic stems with beats, panning and silences when there is no corpus),
with estimates that leak the other sources and add noise.  Each measurement is
a fresh process (bench._bsseval_worker), pinned with ``taskset`` to
``--threads`` cores (JAX_PLATFORMS=cpu; OpenBLAS/OMP threads set alike), plus
ours on the accelerator when JAX sees one.  Our time excludes compilation
(a warm-up call on a short excerpt; reported apart).  Prints a table (time,
real-time factor, peak RSS, speed-up over museval with the same cores, largest
per-window difference) and writes JSON.  museval is optional: without it (or
with ``--no-museval``) only our side is measured.  museval on long tracks is
slow (~2 CPU-s per audio second); ``--museval-max-seconds`` skips it beyond a
length and extrapolates its time linearly from the two longest measured.

  .venv/bin/python -m bench.bsseval --lengths 30,60,240 --threads 1,2 --json out/bsseval.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

from bench import common

RATE = 44100
DEFAULT_CORPUS = os.path.join(common.REPO_ROOT, "data", "synth")


# ----------------------------------------------------------------- inputs
def corpus_stems(root: str, seconds: float) -> np.ndarray | None:
  """(4, T, 2) float32: the corpus' tracks end to end (None: too little audio)."""
  from attnsep_jax.data.loader import validation_tracks
  frames, pieces = int(seconds * RATE), []
  for split in ("test", "valid", "train"):
    for _, _, sources in validation_tracks(root, split=split, sample_rate=RATE):
      pieces.append(np.asarray(sources, np.float32))
      if sum(p.shape[1] for p in pieces) >= frames:
        return np.concatenate(pieces, axis=1)[:, :frames]
  return None


def synthetic_stems(seconds: float, seed: int = 0) -> np.ndarray:
  """(4, T, 2) float32: coloured noise in notes at 120 bpm, panned, with rests."""
  rng = np.random.default_rng(seed)
  frames = int(seconds * RATE)
  time = np.arange(frames) / RATE
  stems = np.empty((4, frames, 2), np.float32)
  for s, (smoothing, beat_hz, rest_period) in enumerate(
      [(0.0, 2.0, 0), (0.98, 1.0, 0), (0.8, 4.0, 16), (0.9, 0.5, 8)]):
    noise = rng.standard_normal(frames)
    if smoothing:   # one-pole low-pass: darker sources
      from scipy.signal import lfilter
      noise = lfilter([1 - smoothing], [1, -smoothing], noise)
    envelope = np.exp(-8.0 * ((time * beat_hz) % 1.0))
    if rest_period:   # the last quarter of every period silent (NaN windows)
      envelope *= (time % rest_period) < 0.75 * rest_period
    mono = noise / np.std(noise) * envelope * 0.1
    pan = 0.2 + 0.2 * s
    stems[s, :, 0] = (1 - pan) * mono
    stems[s, :, 1] = pan * np.roll(mono, 3 * s)
  return stems


def make_estimates(references: np.ndarray, seed: int = 0) -> np.ndarray:
  """A plausible separator's output: 10% leakage of the rest, noise at -40 dB."""
  rng = np.random.default_rng(seed)
  mixture = references.sum(axis=0, keepdims=True)
  noise = rng.standard_normal(references.shape).astype(np.float32)
  scale = 0.01 * references.std(axis=(1, 2), keepdims=True)
  return (0.9 * references + 0.1 * (mixture - references) + scale * noise).astype(np.float32)


# ----------------------------------------------------------------- children
def probe(code: str, env: dict | None = None) -> str | None:
  proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
  return proc.stdout.strip() if proc.returncode == 0 else None


def measure(backend: str, npz: str, tmp: str, cpus: str | None, threads: int | None,
            accelerator: bool, warmup_seconds: float) -> tuple[dict, np.ndarray]:
  """(result JSON, scores (4, S, windows)) of one worker run."""
  tag = f"{backend}_{cpus or 'accelerator'}".replace(",", "-")
  out, scores = os.path.join(tmp, f"{tag}.json"), os.path.join(tmp, f"{tag}.npy")
  env = common.thread_env(threads) if threads else dict(os.environ)
  if not accelerator:
    env["JAX_PLATFORMS"] = "cpu"
  prefix = ["taskset", "-c", cpus] if cpus not in (None, "all") else []
  cmd = prefix + common.module_command(
      sys.executable, "_bsseval_worker", "--backend", backend, "--input", npz, "--out", out,
      "--scores", scores, "--warmup-seconds", str(warmup_seconds))
  result = common.run_json(cmd, out, env=env)
  return result, np.load(scores)


def extrapolate(rows: list[dict], seconds: float, cpus: str, key: str) -> float | None:
  """museval's ``key`` (time_s, cpu_s) at ``seconds``: a line through its two longest runs."""
  done = sorted((r["seconds"], r[key]) for r in rows
                if r["backend"] == "museval" and r["cpus"] == cpus and not r.get("extrapolated"))
  if len(done) < 2:
    return None
  (x0, y0), (x1, y1) = done[-2:]
  return y1 + (y1 - y0) / (x1 - x0) * (seconds - x1)


# ----------------------------------------------------------------- main
def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--lengths", default="30,60,240", help="track lengths, seconds")
  parser.add_argument("--threads", default="1,2", help="CPU thread counts to measure")
  parser.add_argument("--cpus", nargs="*", default=None, metavar="LIST",
                      help="taskset CPU list per --threads entry (default: 0..n-1, "
                      "none with every core)")
  parser.add_argument("--corpus", default=DEFAULT_CORPUS,
                      help="built-in corpus whose tracks are joined (absent: synthetic stems)")
  parser.add_argument("--no-museval", action="store_true", help="measure our side only")
  parser.add_argument("--museval-max-seconds", type=float, default=float("inf"),
                      help="longer tracks: museval's time extrapolated, not measured")
  parser.add_argument("--no-accelerator", action="store_true",
                      help="skip ours on the accelerator even when JAX sees one")
  parser.add_argument("--warmup-seconds", type=float, default=2.0,
                      help="excerpt of our warm-up (compilation) call")
  parser.add_argument("--json", help="write the results here")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  lengths = [float(v) for v in args.lengths.split(",") if v]
  threads = [int(v) for v in args.threads.split(",") if v]
  # Default: cores 0..n-1 (common.thread_prefix), no pinning ("all") for every core.
  cpus = args.cpus or [" ".join(common.thread_prefix(n)[2:]) or "all" for n in threads]
  if len(cpus) != len(threads):
    sys.exit("bench.bsseval: error: give one --cpus list per --threads entry")
  common.warn_if_busy()
  with_museval = not args.no_museval and probe("import museval") is not None
  if not with_museval:
    print("# museval not measured (--no-museval or not installed): our side only",
          file=sys.stderr)
  backend = probe("import jax; print(jax.default_backend())")
  accelerator = None if args.no_accelerator or backend in (None, "cpu") else backend
  use_corpus = os.path.exists(os.path.join(args.corpus, "corpus.json"))
  rows, differences = [], {}
  with tempfile.TemporaryDirectory() as tmp:
    for seconds in lengths:
      references = corpus_stems(args.corpus, seconds) if use_corpus else None
      source = "corpus" if references is not None else "synthetic"
      if references is None:
        references = synthetic_stems(seconds)
      npz = os.path.join(tmp, "stems.npz")
      np.savez(npz, references=references, estimates=make_estimates(references))
      museval_scores = {}
      for n, cpu_list in zip(threads, cpus):
        for name in ("museval", "ours") if with_museval else ("ours",):
          if name == "museval" and seconds > args.museval_max_seconds:
            guess = extrapolate(rows, seconds, cpu_list, "time_s")
            if guess is not None:
              rows.append({"seconds": seconds, "backend": "museval", "device": "cpu",
                           "threads": n, "cpus": cpu_list, "time_s": guess,
                           "cpu_s": extrapolate(rows, seconds, cpu_list, "cpu_s"),
                           "extrapolated": True, "stems": source})
            continue
          result, scores = measure(name, npz, tmp, cpu_list, n, False, args.warmup_seconds)
          rows.append({"seconds": seconds, "backend": name, "threads": n, "cpus": cpu_list,
                       "stems": source, **result})
          if name == "museval":
            museval_scores = scores
          elif len(museval_scores):
            differences[seconds] = compare(scores, museval_scores)
          print(f"# {seconds:g} s, {name}, {n} thread(s): {result['time_s']:.1f} s, "
                f"peak RSS {result['peak_rss_mb']:.0f} MiB", file=sys.stderr)
      if accelerator:
        result, scores = measure("ours", npz, tmp, None, None, True, args.warmup_seconds)
        rows.append({"seconds": seconds, "backend": "ours", "threads": None,
                     "cpus": accelerator, "stems": source,
                     **result})
  report(rows, differences, args, accelerator)


def compare(ours: np.ndarray, theirs: np.ndarray) -> dict:
  """max |difference| per metric and the disagreement lines (bsseval.check)."""
  from attnsep_jax.bsseval.check import disagreements, max_differences
  return {"max_abs_db": max_differences(ours, theirs),
          "disagreements": disagreements(ours, theirs)}


def report(rows, differences, args, accelerator):
  for row in rows:
    row["x_realtime"] = row["seconds"] / row["time_s"]
    # Against museval on the same cores; the accelerator against museval's best.
    match = sorted((r for r in rows if r["backend"] == "museval"
                    and r["seconds"] == row["seconds"]
                    and (r["cpus"] == row["cpus"] or row["device"] != "cpu")),
                   key=lambda r: r["time_s"])
    if row["backend"] == "ours" and match:
      row["speedup_vs_museval"] = match[0]["time_s"] / row["time_s"]
      if "cpu_s" in match[0]:   # CPU seconds: steadier on a shared machine
        row["cpu_speedup_vs_museval"] = match[0]["cpu_s"] / row["cpu_s"]
      row["museval_peak_rss_mb"] = match[0].get("peak_rss_mb")
    if row["seconds"] in differences and row["backend"] == "ours":
      row["max_diff_db"] = max(differences[row["seconds"]]["max_abs_db"].values())
  for row in rows:
    if row.get("extrapolated"):
      row["backend"] = "museval (extrapolated)"
  common.print_table(rows, ["seconds", "backend", "device", "threads", "cpus", "time_s",
                            "cpu_s", "x_realtime", "compile_s", "peak_rss_mb",
                            "device_peak_mb", "speedup_vs_museval",
                            "cpu_speedup_vs_museval", "max_diff_db"],
                     title="BSS Eval v4, 4 stereo stems, 1 s windows (time excludes compilation)")
  for seconds, diff in differences.items():
    print(f"\n{seconds:g} s: max |ours - museval| per window (dB): "
          + ", ".join(f"{m} {v:.2e}" for m, v in diff["max_abs_db"].items())
          + ("; DISAGREE: " + "; ".join(diff["disagreements"]) if diff["disagreements"]
             else "; agreement (bsseval.check)"))
  common.write_json(args.json, {"machine": common.machine_info(), "accelerator": accelerator,
                                "rows": rows, "differences": differences,
                                "cpu_pinning": "taskset per --cpus; JAX_PLATFORMS=cpu"})


if __name__ == "__main__":
  main()
