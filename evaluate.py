"""Scores a separator with BSS Eval v4: ``python evaluate.py --checkpoint DIR --musdb ROOT``
(the same as ``attnsep evaluate``; ``--help`` lists the options)."""

import sys

from attnsep_jax import heap
from attnsep_jax.evaluate_cli import main

if __name__ == "__main__":
  heap.keep_freed_memory()   # before JAX starts its threads
  sys.exit(main())
