"""``attnsep summary --config FILE``: parameters and shapes of a model.

Uses ``jax.eval_shape`` only, so it runs in seconds even for the paper model.
"""

import argparse
import sys

import jax
import jax.numpy as jnp

from attnsep_jax import SOURCES, cli, config as config_lib
from attnsep_jax.models.network import abstract_params, build_model, count_params


def describe(config, seconds: float = 10.0, batch: int = 1) -> dict:
  """Parameter counts per top-level module and the input -> output shapes."""
  model = build_model(config.model)
  params = abstract_params(model)
  time = int(round(seconds * config.data.sample_rate))
  mixture = jax.ShapeDtypeStruct((batch, time, model.audio_channels), jnp.float32)
  stems = jax.eval_shape(lambda p, x: model.apply({"params": p}, x), params, mixture)
  return {
      "total_params": count_params(params),
      "params_by_module": {k: count_params(v) for k, v in params.items()},
      "input_shape": tuple(mixture.shape),
      "output_shape": tuple(stems.shape),
      "bottleneck_frames": model.valid_length(time) // model.total_stride,
      "total_stride": model.total_stride,
  }


def print_summary(config, seconds: float = 10.0, file=sys.stdout):
  info = describe(config, seconds)
  print(f"parameters: {info['total_params']:,}", file=file)
  for name, count in info["params_by_module"].items():
    print(f"  {name:<10} {count:>12,}", file=file)
  print(f"mixture {info['input_shape']} (batch, time, channels) -> stems "
        f"{info['output_shape']} (batch, sources={'/'.join(SOURCES)}, time, channels)",
        file=file)
  print(f"total stride {info['total_stride']} samples; {info['bottleneck_frames']} "
        f"bottleneck frames for {seconds:g} s", file=file)
  return info


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog=cli.prog("summary"),
                                   description="Parameters and shapes of the model a config "
                                   "builds (jax.eval_shape: nothing is initialised).")
  config_lib.add_config_arguments(parser)
  parser.add_argument("--seconds", type=float, default=10.0,
                      help="audio length for the shape report (default 10)")
  try:
    args, config = config_lib.parse_args(parser, argv)
  except config_lib.ConfigError as e:
    return cli.fail("summary", e)
  print_summary(config, args.seconds)
  return 0
