"""Training a bag of models (``config.train.bag_size`` > 1).

The members are ordinary runs, trained one after another in
``WORKDIR/model_0``, ``WORKDIR/model_1``, ...: member i with seeds
``seed + i`` and ``data.seed + i`` and an equal share of
``train.time_budget_seconds``.  ``WORKDIR/config.json`` holds the bag's own
config, which is how every tool that loads a workdir (``export.load_model``)
knows to average the members.  Resuming resumes the first unfinished member.
"""

from __future__ import annotations

import copy
import os

MEMBER_DIR = "model_{}"


def bag_size(config) -> int:
  """Members of the bag ``config`` trains (1: a single model)."""
  return int(config.train.get("bag_size", 1) or 1)


def member_dir(workdir: str, index: int) -> str:
  return os.path.join(workdir, MEMBER_DIR.format(index))


def member_config(config, index: int):
  """The config of member ``index``: its own seeds and share of the budget."""
  member = copy.deepcopy(config)
  member.train.bag_size = 1
  member.seed = config.seed + index
  member.data.seed = config.data.seed + index
  budget = config.train.get("time_budget_seconds")
  if budget:
    with member.ignore_type():   # a budget given in whole seconds is an int
      member.train.time_budget_seconds = budget / bag_size(config)
  return member


def train_bag(config, workdir: str, **kwargs) -> dict:
  """Trains (or resumes) each member with ``train_and_evaluate``.

  Keyword arguments go to every member's ``train_and_evaluate``.  Returns
  the last member's summary with ``members``, every member's summary.
  """
  import jax

  from attnsep_jax.train.loop import check_workdir_config, train_and_evaluate, write_config

  workdir = os.path.abspath(workdir)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
  check_workdir_config(workdir, config)
  write_config(workdir, config)
  summaries = []
  for index in range(bag_size(config)):
    print(f"bag member {index + 1} of {bag_size(config)}: {member_dir(workdir, index)}",
          flush=True)
    summaries.append(train_and_evaluate(member_config(config, index),
                                        member_dir(workdir, index), **kwargs))
  return dict(summaries[-1], members=summaries)
