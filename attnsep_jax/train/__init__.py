"""Training: state and optimiser, the pure step, checkpoints, multi-host, the loop.

``train_and_evaluate(config, workdir)`` in ``loop`` is the entry point;
``train.py`` only parses arguments and calls it.  See docs/training.md.
"""
