"""Ours against the separators a user would pick instead, on the same audio.

Runs the same stereo 44.1 kHz audio through our model (``attnsep_jax.inference
.separate``, the paper config, random weights) and through HT Demucs, Demucs
v2 and Open-Unmix (umxhq) built from their classes with random weights, each
measurement in a fresh process (bench._peer_worker).  Ours runs right
before every peer run (ours, A, ours, B, ... for R rounds) and each peer is
compared with the ours-run next to it, so that machine drift cancels.

The peers run in their own virtual environment (torch 2.13.0 CPU, demucs
4.1.0, openunmix 1.3.0); ``--setup-peer-venv`` creates it.  Without it, or with
``--peers none``, only our side is measured.

Prints a table (median real-time factor, peak RSS, FLOPs per audio second,
ours/peer ratio) and our achieved FLOP/s against the matmul peak measured in
the same run; ``--json`` writes everything.

  .venv/bin/python -m bench.peers --seconds 30 --rounds 3 --setup-peer-venv --json out/peers.json
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

from attnsep_jax import config as config_lib
from bench import common

PEERS = ("htdemucs", "demucs_v2", "umxhq")
# soundfile: bench.quality's peer trainers read the corpus wavs.
PEER_PACKAGES = ["torch==2.13.0", "demucs==4.1.0", "numpy", "soundfile"]
# openunmix pins torchaudio, which would replace torch; the model needs neither
# torchaudio nor its other extras (the worker stubs the torchaudio import).
PEER_NODEPS = ["openunmix==1.3.0"]


def peer_python(venv: str) -> str:
  return os.path.join(venv, "bin", "python")


def setup_peer_venv(venv: str) -> None:
  print(f"# creating the peer venv at {venv} (torch CPU wheel, a few minutes)", file=sys.stderr)
  subprocess.run([sys.executable, "-m", "venv", venv], check=True)
  pip = [peer_python(venv), "-m", "pip", "install", "--quiet"]
  subprocess.run(pip + PEER_PACKAGES, check=True)
  subprocess.run(pip + ["--no-deps"] + PEER_NODEPS, check=True)


def worker(python, system, args, out, count_flops):
  cmd = common.thread_prefix(args.threads) + common.module_command(
      python, "_peer_worker", "--system", system, "--audio", args.audio_path, "--out", out,
      "--threads", str(args.threads), "--warmup-seconds", str(args.warmup_seconds),
      "--sample-rate", str(args.sample_rate), "--config", args.config)
  cmd += args.config_overrides
  if count_flops:
    cmd.append("--count-flops")
  result = common.run_json(cmd, out, env=common.thread_env(args.threads))
  print(f"# {system:10s} RTF {result['rtf'][0]:.3f}  peak RSS {result['peak_rss_mb']:.0f} MiB",
        file=sys.stderr)
  return result


def ours_calls(result, audio_seconds, sample_rate):
  """Chunk-apply calls of one ``separate`` (its segmenting, no shifts)."""
  o = result["options"]
  segment = int(round(o["segment_seconds"] * sample_rate))
  time = int(round(audio_seconds * sample_rate))
  hop = max(1, int(segment * (1.0 - o["overlap"])))
  segments = max(1, math.ceil(max(time - segment, 0) / hop) + 1)
  return math.ceil(segments / o["batch_size"]) * max(1, o["shifts"])


def summarise(runs, pairs, args, peaks):
  rows = []
  ours = runs["ours"]
  for system, results in runs.items():
    rtfs = [r["rtf"][0] for r in results]
    first = results[0]
    row = {"system": system, "params (M)": first["params"] / 1e6,
           "RTF median": common.median(rtfs), "RTF min": min(rtfs), "runs": len(rtfs),
           "peak RSS (MiB)": max(r["peak_rss_mb"] for r in results)}
    if system == "ours":
      flops = first.get("matmul_flops_per_call")
      if flops:
        row["GFLOP / audio s"] = flops / first["audio_seconds_per_call"] / 1e9
        calls = ours_calls(first, first["audio_seconds"], args.sample_rate)
        row["GFLOP/s"] = flops * calls / first["audio_seconds"] / row["RTF median"] / 1e9
    else:
      flops = next((r["flops_per_audio_second"] for r in results if r["flops_per_audio_second"]), None)
      if flops:
        row["GFLOP / audio s"] = flops / 1e9
        row["GFLOP/s"] = flops / row["RTF median"] / 1e9
      ratios = [p["ours"]["rtf"][0] / p["peer"]["rtf"][0] for p in pairs if p["system"] == system]
      row["ours/peer RTF"] = common.median(ratios)
    if "GFLOP/s" in row:
      row["of matmul peak"] = row["GFLOP/s"] / peaks["numpy_2_threads"]
    rows.append(row)

  efficiency = {}
  first = ours[0]
  if first.get("matmul_flops_per_call"):
    model_gflops = first["matmul_flops_per_call"] / first["call_s"] / 1e9
    efficiency = {
        "matmul_gflop_per_call": first["matmul_flops_per_call"] / 1e9,
        "xla_cost_analysis_gflop_per_call": first["xla_flops_per_call"] / 1e9,
        "chunk_apply_s": first["call_s"],
        "chunk_apply_gflops": model_gflops,
        "chunk_apply_fraction_of_numpy_peak": model_gflops / peaks["numpy_2_threads"],
        "xla_matmul_gflops": first["xla_matmul_gflops"],
        "compile_s": common.median([r["compile_s"] for r in ours]),
    }
  return rows, efficiency


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--seconds", type=float, default=30.0, help="audio length")
  parser.add_argument("--rounds", type=int, default=3, help="alternation rounds")
  parser.add_argument("--threads", type=int, default=2, help="threads of every system")
  parser.add_argument("--peers", default=",".join(PEERS),
                      help=f"comma list of {PEERS}, or 'none' for our side only")
  parser.add_argument("--peer-venv", default=os.path.join(common.REPO_ROOT, ".peer-venv"),
                      help="virtual environment holding torch, demucs and openunmix")
  parser.add_argument("--setup-peer-venv", action="store_true",
                      help="create --peer-venv when it does not exist")
  config_lib.add_config_arguments(parser, os.path.join(common.REPO_ROOT, "configs", "paper.py"),
                                  what="our model and inference settings")
  parser.add_argument("--warmup-seconds", type=float, default=10.0,
                      help="untimed warm-up run length (the FLOP-counting round warms up on all)")
  parser.add_argument("--sample-rate", type=int, default=44100)
  parser.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n matmul peak")
  parser.add_argument("--json", help="write the results here")
  try:
    args, _ = config_lib.parse_args(parser, argv)
  except config_lib.ConfigError as e:
    parser.error(str(e))

  peers = [] if args.peers in ("", "none") else args.peers.split(",")
  unknown = set(peers) - set(PEERS)
  if unknown:
    parser.error(f"unknown peers {sorted(unknown)}; choose from {PEERS}")
  python = peer_python(args.peer_venv)
  if peers and not os.path.exists(python):
    if args.setup_peer_venv:
      setup_peer_venv(args.peer_venv)
    else:
      print(f"# no peer venv at {args.peer_venv} (pass --setup-peer-venv to create it); "
            "measuring our side only", file=sys.stderr)
      peers = []

  common.warn_if_busy()
  machine = common.machine_info()
  peaks = {"numpy_2_threads": common.matmul_peak_gflops(2, args.matmul_size),
           "numpy_1_thread": common.matmul_peak_gflops(1, args.matmul_size)}

  runs = {"ours": [], **{p: [] for p in peers}}
  pairs = []
  with tempfile.TemporaryDirectory() as tmp:
    args.audio_path = os.path.join(tmp, "audio.npy")
    rng = np.random.default_rng(0)
    np.save(args.audio_path, 0.1 * rng.standard_normal(
        (int(args.seconds * args.sample_rate), 2), dtype=np.float32))
    for round_ in range(args.rounds):
      for i, peer in enumerate(peers or [None]):
        first = round_ == 0 and i == 0
        out = os.path.join(tmp, f"ours_{round_}_{i}.json")
        ours = worker(sys.executable, "ours", args, out, count_flops=first)
        runs["ours"].append(ours)
        if peer:
          out = os.path.join(tmp, f"{peer}_{round_}.json")
          result = worker(python, peer, args, out, count_flops=round_ == 0)
          runs[peer].append(result)
          pairs.append({"system": peer, "ours": ours, "peer": result})
  peaks["numpy_2_threads_end"] = common.matmul_peak_gflops(2, args.matmul_size)

  rows, efficiency = summarise(runs, pairs, args, peaks)
  machine["load_average_end"] = list(os.getloadavg())
  columns = ["system", "params (M)", "RTF median", "RTF min", "runs", "peak RSS (MiB)",
             "GFLOP / audio s", "GFLOP/s", "of matmul peak", "ours/peer RTF"]
  common.print_table(rows, columns, title=f"{args.seconds:g} s stereo, {args.threads} threads, "
                     f"{machine['cpu']}")
  print(f"\nfloat32 matmul peak (numpy/OpenBLAS): {peaks['numpy_2_threads']:.1f} GFLOP/s "
        f"2 threads ({peaks['numpy_2_threads_end']:.1f} at the end), "
        f"{peaks['numpy_1_thread']:.1f} 1 thread")
  if efficiency:
    print(f"ours, chunk apply alone: {efficiency['matmul_gflop_per_call']:.1f} GFLOP "
          f"(XLA cost analysis {efficiency['xla_cost_analysis_gflop_per_call']:.1f}) in "
          f"{efficiency['chunk_apply_s']:.3f} s = {efficiency['chunk_apply_gflops']:.1f} GFLOP/s, "
          f"{100 * efficiency['chunk_apply_fraction_of_numpy_peak']:.0f}% of the numpy peak "
          f"(XLA's own matmul: {efficiency['xla_matmul_gflops']:.1f} GFLOP/s); "
          f"compile {efficiency['compile_s']:.1f} s")
  common.write_json(args.json, {"machine": machine, "args": {k: v for k, v in vars(args).items()
                                                             if k != "audio_path"},
                                "matmul_peak_gflops": peaks, "summary": rows,
                                "ours_efficiency": efficiency, "runs": runs})


if __name__ == "__main__":
  main()
