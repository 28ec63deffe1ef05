"""Trains a separator: ``python train.py --config configs/cpu_small.py --workdir DIR``.

Until the training loop lands this prints the model the config builds.
"""

import argparse

from attnsep_jax import config as config_lib
from attnsep_jax.summary import print_summary


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  config_lib.add_config_arguments(parser)
  parser.add_argument("--workdir", help="where checkpoints and logs go")
  args, config = config_lib.parse_args(parser, argv)
  print_summary(config, config.data.segment_seconds)


if __name__ == "__main__":
  main()
