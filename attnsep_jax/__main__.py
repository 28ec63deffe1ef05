"""``python -m attnsep_jax <command>``: the same as ``attnsep <command>``."""

import sys

from attnsep_jax.cli import main

if __name__ == "__main__":
  sys.exit(main())
