"""Trains a separator: ``python train.py --config configs/cpu_small.py --workdir DIR``
(the same as ``attnsep train``; ``--help`` lists the options)."""

import sys

from attnsep_jax import heap
from attnsep_jax.cli.train import main

if __name__ == "__main__":
  heap.keep_freed_memory()   # before JAX starts its threads
  sys.exit(main())
