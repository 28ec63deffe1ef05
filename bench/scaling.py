"""Time and memory against input length (inference) and batch size (training).

Each point is a fresh process, so that its peak RSS is its own: inference of
random noise of each length through ``attnsep_jax.inference.separate``
(bench._peer_worker, after a warm-up), and a training step at each batch
size (bench.train_step).  Chunked inference should take time linear in the
length and memory nearly flat (the model sees one batch of segments at a
time; only the input and the output arrays grow).  Prints tables, writes JSON
and a PNG plot.

  .venv/bin/python -m bench.scaling --lengths 15,30,60,120,300,600 --batch-sizes 1,2,4,8 \\
      --json out/scaling.json --plot docs/img/scaling.png
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from attnsep_jax import config as config_lib
from bench import common


def floats(text):
  return [float(v) for v in text.split(",") if v]


def inference_points(args, tmp):
  rows = []
  for seconds in args.lengths:
    out = os.path.join(tmp, f"infer_{seconds:g}.json")
    cmd = common.module_command(
        sys.executable, "_peer_worker", "--system", "ours", "--seconds", str(seconds),
        "--warmup-seconds", "0", "--out", out, "--config", args.config, *args.config_overrides)
    r = common.run_json(cmd, out)
    rows.append({"seconds": seconds, "time_s": r["seconds"][0], "rtf": r["rtf"][0],
                 "compile_s": r["compile_s"], "rss_after_warmup_mb": r["rss_before_mb"],
                 "peak_rss_mb": r["peak_rss_mb"],
                 # What any separator must hold: the float32 input and 4 output stems.
                 "io_arrays_mb": seconds * r["options"]["sample_rate"] * 2 * 4 * 5 / 2 ** 20})
    print(f"# inference {seconds:g} s: {rows[-1]['time_s']:.2f} s, "
          f"peak RSS {rows[-1]['peak_rss_mb']:.0f} MiB", file=sys.stderr)
  return rows


def training_points(args, tmp):
  rows = []
  for batch in args.batch_sizes:
    out = os.path.join(tmp, f"train_{batch}.json")
    cmd = common.module_command(
        sys.executable, "train_step", "--config", args.config, "--batch-size", str(int(batch)),
        "--steps", str(args.steps), "--no-flops", "--json", out, *args.config_overrides)
    if args.segment_seconds:
      cmd += ["--segment-seconds", str(args.segment_seconds)]
    r = common.run_json(cmd, out)
    rows.append({"batch_size": int(batch), "segment_seconds": r["segment_seconds"],
                 "step_s": r["step_s"], "audio_seconds_per_second": r["audio_seconds_per_second"],
                 "compile_s": r["compile_s"], "peak_rss_mb": r["peak_rss_mb"]})
    print(f"# training batch {int(batch)}: {r['step_s']:.2f} s/step, "
          f"peak RSS {r['peak_rss_mb']:.0f} MiB", file=sys.stderr)
  return rows


def plot(path, infer, train):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  if infer:
    ax = axes[0]
    x = [r["seconds"] for r in infer]
    ax.plot(x, [r["time_s"] for r in infer], "o-", color="C0", label="time (s)")
    ax.set_xlabel("track length (s)")
    ax.set_ylabel("separation time (s)", color="C0")
    twin = ax.twinx()
    twin.plot(x, [r["peak_rss_mb"] / 1024 for r in infer], "s--", color="C1", label="peak RSS")
    twin.set_ylabel("peak RSS (GiB)", color="C1")
    twin.set_ylim(bottom=0)
    ax.set_ylim(bottom=0)
    ax.set_title("inference vs length")
  if train:
    ax = axes[1]
    x = [r["batch_size"] for r in train]
    ax.plot(x, [r["step_s"] for r in train], "o-", color="C0")
    ax.set_xlabel(f"batch size ({train[0]['segment_seconds']:g} s segments)")
    ax.set_ylabel("step time (s)", color="C0")
    twin = ax.twinx()
    twin.plot(x, [r["peak_rss_mb"] / 1024 for r in train], "s--", color="C1")
    twin.set_ylabel("peak RSS (GiB)", color="C1")
    twin.set_ylim(bottom=0)
    ax.set_ylim(bottom=0)
    ax.set_title("training step vs batch size")
  fig.tight_layout()
  common.save_figure(fig, path, dpi=110)
  plt.close(fig)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  config_lib.add_config_arguments(parser, os.path.join(common.REPO_ROOT, "configs", "paper.py"))
  parser.add_argument("--lengths", type=floats, default=floats("15,30,60,120,300,600"),
                      help="inference input lengths in seconds, comma separated ('' to skip)")
  parser.add_argument("--batch-sizes", type=floats, default=floats("1,2,4,8"),
                      help="training batch sizes, comma separated ('' to skip)")
  parser.add_argument("--segment-seconds", type=float,
                      help="training segment length (default: config.data.segment_seconds)")
  parser.add_argument("--steps", type=int, default=2, help="timed training steps per point")
  parser.add_argument("--json", help="write the results here")
  parser.add_argument("--plot", help="write a PNG plot here")
  try:
    args, _ = config_lib.parse_args(parser, argv)
  except config_lib.ConfigError as e:
    parser.error(str(e))

  common.warn_if_busy()
  with tempfile.TemporaryDirectory() as tmp:
    infer = inference_points(args, tmp)
    train = training_points(args, tmp)
  common.print_table(infer, ["seconds", "time_s", "rtf", "compile_s", "rss_after_warmup_mb",
                             "peak_rss_mb", "io_arrays_mb"], title="inference vs length")
  summary = {}
  if len(infer) > 1:
    # Memory growth between the shortest and longest input, and the ratio the
    # issue's target names (10 min vs 1 min) when both were measured.
    by_len = {r["seconds"]: r for r in infer}
    summary["peak_rss_ratio_longest_vs_shortest"] = (
        infer[-1]["peak_rss_mb"] / infer[0]["peak_rss_mb"])
    if 60.0 in by_len and 600.0 in by_len:
      summary["peak_rss_ratio_600s_vs_60s"] = by_len[600.0]["peak_rss_mb"] / by_len[60.0]["peak_rss_mb"]
    print("\n" + ", ".join(f"{k} = {v:.2f}" for k, v in summary.items()))
  common.print_table(train, ["batch_size", "segment_seconds", "step_s",
                             "audio_seconds_per_second", "compile_s", "peak_rss_mb"],
                     title="training step vs batch size")
  if args.plot:
    plot(args.plot, infer, train)
  common.write_json(args.json, {"machine": common.machine_info(), "config": args.config,
                                "overrides": args.config_overrides, "inference": infer,
                                "training": train, "summary": summary})


if __name__ == "__main__":
  main()
