"""Benchmarks of attnsep-jax: speed, memory and quality against its peers.

Each benchmark is a module run from the repository root, e.g.
``.venv/bin/python -m bench.peers --help``; the modules import each other as
``bench.<name>`` and the project as the installed ``attnsep_jax``.  Nothing
here is imported by the package.  Importing ``bench`` itself imports nothing
(the peers' virtual environment, which has no JAX, imports it too).
"""
