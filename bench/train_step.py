"""Training step speed: step time, audio trained per second, compile time, FLOP/s.

Times the project's training step (``attnsep_jax.train.step.train_step``,
pmapped over the local devices, with gradient clipping, Adam and the EMA) on a
random batch of ``config.data.batch_size`` x ``config.data.segment_seconds``
stereo audio, or with ``--step own`` a bare jitted value_and_grad + Adam
update (what the model alone costs).  FLOPs of the step come from XLA's cost
analysis of the compiled step and from a count of its dots and convolutions
(which, unlike XLA, multiplies the LSTM scans by their length); achieved
FLOP/s is reported against the float32 matmul peak measured in the same run.

  .venv/bin/python -m bench.train_step --config configs/paper.py --json out/train_step.json
  .venv/bin/python -m bench.train_step --config configs/cpu_small.py --batch-size 8
  .venv/bin/python -m bench.train_step --config configs/paper.py --no-flops \
      --config.data.batch_size=2 --config.model.dtype=bfloat16
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from attnsep_jax import config as config_lib
from attnsep_jax import heap
from attnsep_jax.losses import separation_loss
from attnsep_jax.models.network import build_model, count_params
from bench import common


def random_batch(batch, time, sources, seed=0):
  rng = np.random.default_rng(seed)
  stems = 0.1 * rng.standard_normal((batch, sources, time, 2), dtype=np.float32)
  return {"mixture": stems.sum(axis=1), "sources": stems}


def project_step(config, model, params, batch):
  """The project's pmapped step on replicated state and a sharded batch.

  Returns (compiled step, its arguments, next-arguments function, flop counter).
  """
  from attnsep_jax.train import distributed
  from attnsep_jax.train.state import abstract_train_state
  from attnsep_jax.train.step import AXIS, train_step
  n = jax.local_device_count()
  abstract = abstract_train_state(config, model)
  # Fill the abstract state with our random params: the project's jitted
  # init of the paper model costs tens of seconds and is not what we measure.
  state = abstract.replace(
      step=jnp.zeros((), jnp.int32), params=params,
      opt_state=jax.jit(abstract.tx.init)(params),
      ema_params=params if abstract.ema_params is not None else None,
      rng=jax.random.key_data(jax.random.key(0)))
  rng = np.asarray(jax.random.key_data(jax.random.key(1)))
  args = (distributed.replicate(state), distributed.shard_batch(batch), rng)
  step = distributed.pmap_train_step()
  per_device = jax.tree.map(lambda x: x[: x.shape[0] // n], batch)
  count = lambda: n * common.jaxpr_matmul_flops(train_step, state, per_device, rng,
                                                axis_env=[(AXIS, n)])
  return step, args, lambda out, args: (out[0],) + args[1:], count


def own_step(config, model, params, batch):
  """Bare value_and_grad + Adam update, jitted, state donated."""
  tx = optax.adam(config.optim.learning_rate)
  loss_kwargs = dict(config.loss)

  def step(params, opt_state, batch):
    def loss_fn(p):
      return separation_loss(batch["sources"], model.apply({"params": p}, batch["mixture"],
                                                           train=True), **loss_kwargs)[0]
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  args = (params, jax.jit(tx.init)(params), jax.device_put(batch))
  count = lambda: common.jaxpr_matmul_flops(step, *args)
  return (jax.jit(step, donate_argnums=(0, 1)), args,
          lambda out, args: (out[0], out[1], args[2]), count)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  config_lib.add_config_arguments(parser, os.path.join(common.REPO_ROOT, "configs", "paper.py"))
  parser.add_argument("--batch-size", type=int, help="default: config.data.batch_size")
  parser.add_argument("--segment-seconds", type=float, help="default: config.data.segment_seconds")
  parser.add_argument("--step", choices=("project", "own"), default="project",
                      help="project: attnsep_jax.train.step (pmapped, clip, Adam, EMA); "
                           "own: bare jitted value_and_grad + Adam")
  parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
  parser.add_argument("--no-flops", action="store_true", help="skip FLOP counting and the peak")
  parser.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n matmul peak")
  parser.add_argument("--heap", choices=("keep", "glibc"), default="keep",
                      help="keep: reuse freed memory as train.py does (attnsep_jax.heap); "
                           "glibc: the C library's defaults")
  parser.add_argument("--json", help="write the results here")
  try:
    args, config = config_lib.parse_args(parser, argv)
  except config_lib.ConfigError as e:
    parser.error(str(e))

  kept = args.heap == "keep" and heap.keep_freed_memory()
  common.warn_if_busy()
  model = build_model(config.model)
  batch_size = args.batch_size or config.data.batch_size
  seconds = args.segment_seconds or config.data.segment_seconds
  rate = config.data.sample_rate
  batch = random_batch(batch_size, int(round(seconds * rate)), config.model.num_sources)
  params, init_s = common.timed(lambda: jax.device_put(common.random_params(model, config.seed)))

  make = project_step if args.step == "project" else own_step
  step, step_args, advance, count = make(config, model, params, batch)
  num_params = count_params(params)
  del params
  compiled, compile_s = common.timed(lambda: step.lower(*step_args).compile())

  times = []
  for i in range(args.steps + 1):  # the first step warms up, untimed and uncounted
    out, seconds_ = common.timed(lambda: jax.block_until_ready(compiled(*step_args)))
    step_args = advance(out, step_args)
    if i:
      times.append(seconds_)
    else:
      faults = common.minor_page_faults()
  faults_per_step = (common.minor_page_faults() - faults) / args.steps
  step_s = common.median(times)
  result = {"config": args.config, "overrides": args.config_overrides, "step": args.step,
            "devices": jax.local_device_count(), "batch_size": batch_size,
            "segment_seconds": seconds, "params": num_params, "init_s": init_s, "compile_s": compile_s, "step_s": step_s,
            "heap_kept": kept, "page_faults_per_step": faults_per_step,
            "step_times": times, "audio_seconds_per_second": batch_size * seconds / step_s,
            "machine": common.machine_info()}
  if not args.no_flops:
    peak = common.matmul_peak_gflops(2, args.matmul_size)
    result.update(
        xla_gflop_per_step=common.xla_flops(compiled) * jax.local_device_count() / 1e9,
        matmul_gflop_per_step=count() / 1e9, matmul_peak_gflops=peak)
    result["gflops"] = result["matmul_gflop_per_step"] / step_s
    result["fraction_of_matmul_peak"] = result["gflops"] / peak
  result["peak_rss_mb"] = common.peak_rss_mb()

  columns = ["step", "batch_size", "segment_seconds", "compile_s", "step_s", "page_faults_per_step",
             "audio_seconds_per_second", "matmul_gflop_per_step", "xla_gflop_per_step",
             "gflops", "matmul_peak_gflops", "fraction_of_matmul_peak", "peak_rss_mb"]
  common.print_table([result], columns, title=f"training step, {args.config}")
  common.write_json(args.json, result)


if __name__ == "__main__":
  main()
