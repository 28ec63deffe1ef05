"""Ablation studies: every variant trained, scored and tabulated in one command.

* ``study``: finds the variants (``configs/ablations/*.py``), builds each
  variant's config, trains or resumes it in its own workdir and scores it on
  the test subset (the rules for what is retrained and what is re-scored).
* ``report``: per-variant statistics (paired bootstrap against the base),
  the Markdown tables, the plots and ``ablations.json``.
* ``cli``: ``attnsep ablate``.
"""
