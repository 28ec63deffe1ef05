"""One separator, one measurement, in its own process (used by bench.peers, bench.scaling).

A fresh process per measurement gives each system its own peak RSS and keeps
one system's allocator and thread pools from disturbing the next.  It runs in
our venv for ``ours`` and in the peers' venv (torch, demucs, openunmix, no JAX)
for the others, so it imports nothing of either at module level.

Writes one JSON object to ``--out``: seconds per run, real-time factor, peak
RSS, parameter count and, where counted, FLOPs.
"""

from __future__ import annotations

import argparse
import os
import sys

from bench import common

SOURCES = ["drums", "bass", "other", "vocals"]
PEERS = ("htdemucs", "demucs_v2", "umxhq")


def load_audio(args):
  import numpy as np
  if args.audio:
    return np.load(args.audio).astype(np.float32)             # (time, 2)
  rng = np.random.default_rng(args.seed)
  return 0.1 * rng.standard_normal((int(args.seconds * args.sample_rate), 2), dtype=np.float32)


# ------------------------------------------------------------------------ peers
def stub_torchaudio():
  """Lets openunmix import without torchaudio.

  openunmix imports torchaudio at module level for file I/O and resampling
  only; the model, its torch STFT, Wiener filter and augmentations never call
  it, and no torchaudio wheel matches torch 2.13 here.
  """
  import types
  sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))


def build_peer(name):
  if name == "htdemucs":
    from demucs.htdemucs import HTDemucs
    return HTDemucs(SOURCES)
  if name == "demucs_v2":
    # demucs 4's Demucs class with the v2 paper settings (2-layer BiLSTM, 1x1
    # rewrite in the encoder, width-3 context in the decoder, no DConv
    # branches, no input normalisation), 10 s training segments: 265.7 M
    # parameters, as the released v2 model.
    from demucs.demucs import Demucs
    return Demucs(SOURCES, lstm_layers=2, context=1, dconv_mode=0, gelu=False,
                  norm_starts=100, normalize=False, segment=10)
  if name == "umxhq":
    stub_torchaudio()
    import openunmix
    return openunmix.umxhq(pretrained=False)
  raise ValueError(f"unknown peer {name!r}; choose one of {PEERS}")


def run_peer(args, audio):
  import torch
  torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  model = build_peer(args.system).eval()
  params = sum(p.numel() for p in model.parameters())
  mix = torch.from_numpy(audio.T.copy())                      # (2, time)

  if args.system == "umxhq":
    # Open-Unmix's Separator: STFT of the whole track, the four target
    # models, Wiener filter (niter=1), iSTFT: how it is used.
    def separate(x):
      return model(x[None])[0]
  else:
    from demucs.apply import apply_model
    # The model's own chunked inference at its default segment, as
    # `demucs.separate` does, but without random shifts (ours uses none).
    def separate(x):
      return apply_model(model, x[None], shifts=0, split=True, overlap=0.25,
                         progress=False, device="cpu")[0]

  warm = mix[:, : int(args.warmup_seconds * args.sample_rate)]
  flops = None
  with torch.inference_mode():
    if args.count_flops:
      # The warm-up doubles as the count, on the whole input (chunking and
      # padding depend on its length).  torch's counter skips LSTMs.
      from torch.utils.flop_counter import FlopCounterMode
      with FlopCounterMode(display=False) as counter:
        separate(mix)
      flops = counter.get_total_flops() / (mix.shape[1] / args.sample_rate)
    else:
      separate(warm)
    times = []
    for _ in range(args.repeats):
      out, seconds = common.timed(separate, mix)
      times.append(seconds)
  return {"params": int(params), "seconds": times, "finite": bool(torch.isfinite(out).all()),
          "flops_per_audio_second": flops, "torch": torch.__version__}


# ------------------------------------------------------------------------ ours
def run_ours(args, audio):
  import jax
  import jax.numpy as jnp
  import numpy as np
  from attnsep_jax import inference
  from attnsep_jax.config import load_config
  from attnsep_jax.models.network import build_model, count_params

  config = load_config(args.config, args.config_overrides)
  model = build_model(config.model)
  params, init_s = common.timed(lambda: jax.device_put(common.random_params(model, args.seed)))
  infer = dict(config.inference)
  options = dict(sample_rate=args.sample_rate, segment_seconds=infer["segment_seconds"],
                 overlap=infer["overlap"], batch_size=infer["batch_size"],
                 shifts=infer["shifts"])
  segment = int(round(options["segment_seconds"] * args.sample_rate))
  chunk = jnp.zeros((options["batch_size"], segment, 2), jnp.float32)
  apply = lambda p, x: model.apply({"params": p}, x)

  result = {"params": count_params(params), "init_s": init_s, "options": options,
            "jax": jax.__version__}
  # The chunk apply compiled on its own: compile time, and FLOPs per call.
  compiled, result["compile_s"] = common.timed(lambda: jax.jit(apply).lower(params, chunk).compile())
  if args.count_flops:
    result["xla_flops_per_call"] = common.xla_flops(compiled)
    result["matmul_flops_per_call"] = common.jaxpr_matmul_flops(apply, params, chunk)
    # Model alone: the compiled chunk apply, best of a few calls.
    compiled(params, chunk).block_until_ready()
    result["call_s"] = min(common.timed(lambda: compiled(params, chunk).block_until_ready())[1]
                           for _ in range(args.model_calls))
    result["audio_seconds_per_call"] = options["batch_size"] * options["segment_seconds"]
    result["xla_matmul_gflops"] = common.xla_matmul_gflops()
  del compiled

  # The real path: attnsep_jax.inference.separate (its own jit compiles here).
  warm = audio[: max(segment, int(args.warmup_seconds * args.sample_rate))]
  _, result["first_call_s"] = common.timed(inference.separate, model, params, warm, **options)
  result["rss_before_mb"] = common.peak_rss_mb()
  times = []
  for _ in range(args.repeats):
    out, seconds = common.timed(inference.separate, model, params, audio, **options)
    times.append(seconds)
  result.update(seconds=times, finite=bool(np.isfinite(out).all()))
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--system", required=True, help=f"ours or one of {PEERS}")
  parser.add_argument("--out", required=True, help="JSON result path")
  parser.add_argument("--audio", help=".npy of (time, 2) float32; else random noise")
  parser.add_argument("--seconds", type=float, default=30.0, help="noise length without --audio")
  parser.add_argument("--sample-rate", type=int, default=44100)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=1, help="timed runs after the warm-up")
  parser.add_argument("--warmup-seconds", type=float, default=10.0,
                      help="length of the untimed warm-up run")
  parser.add_argument("--count-flops", action="store_true")
  parser.add_argument("--model-calls", type=int, default=3,
                      help="ours: timed calls of the bare chunk apply (with --count-flops)")
  parser.add_argument("--config", default=os.path.join(common.REPO_ROOT, "configs", "paper.py"),
                      help="ours: config file; override fields with --config.a.b=value")
  parser.add_argument("--seed", type=int, default=0)
  # The config is parsed only for ours (the peers' venv has no ml_collections):
  # the --config.a.b=value items go to attnsep_jax.config.load_config as they are.
  args, args.config_overrides = parser.parse_known_args(argv)
  stray = [a for a in args.config_overrides if not a.startswith("--config.")]
  if stray:
    parser.error(f"unrecognized arguments: {' '.join(stray)}")

  audio = load_audio(args)
  run = run_ours if args.system == "ours" else run_peer
  result = run(args, audio)
  audio_seconds = audio.shape[0] / args.sample_rate
  result.update(system=args.system, audio_seconds=audio_seconds, threads=args.threads,
                rtf=[s / audio_seconds for s in result["seconds"]],
                peak_rss_mb=common.peak_rss_mb())
  common.write_json(args.out, result)


if __name__ == "__main__":
  main()
