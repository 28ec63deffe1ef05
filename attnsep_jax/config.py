"""Experiment configs: Python files under ``configs/`` with ``get_config()``.

A config file returns an ``ml_collections.ConfigDict`` whose sections map
one-to-one onto constructor keyword arguments (``config.model`` ->
``AttnSepNet(**config.model)``, ``config.data`` -> the loader, ...).
Command-line overrides use dotted paths, parsed here for every command that
takes a config (train, ablate, summary, the benchmarks)::

    attnsep train --config configs/paper.py --config.model.num_dual_path_blocks=4

Ablation files (``configs/ablations/*.py``) additionally define
``override(config) -> config`` so that the same ablation can be applied to
any base (``cpu_small`` for a CPU study, ``paper`` for the real one).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import sys
from typing import Any, Callable, Sequence

import ml_collections

ConfigDict = ml_collections.ConfigDict


class ConfigError(ValueError):
  """A config file or override that cannot be applied."""


def _load_module(path: str):
  if not os.path.isfile(path):
    raise ConfigError(f"config file not found: {path}")
  name = "attnsep_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def sibling(config_file: str, name: str) -> str:
  """Path of another config next to ``config_file`` (configs derive by path,
  so they work from any working directory without a ``configs`` package)."""
  return os.path.join(os.path.dirname(os.path.abspath(config_file)), name)


def load_config(path: str, overrides: Sequence[str] = ()) -> ConfigDict:
  """Loads ``get_config()`` from a config file and applies ``a.b=v`` overrides."""
  module = _load_module(path)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"{path} defines no get_config()")
  config = module.get_config()
  return apply_overrides(config, overrides)


def load_ablation(path: str) -> Callable[[ConfigDict], ConfigDict]:
  """Returns the ``override(config)`` function of an ablation config file."""
  module = _load_module(path)
  if not hasattr(module, "override"):
    raise ConfigError(f"{path} defines no override(config)")
  return module.override


def parse_value(text: str) -> Any:
  """Parses an override value as a Python literal, else keeps the string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(config: ConfigDict, overrides: Sequence[str]) -> ConfigDict:
  """Applies ``a.b.c=value`` strings to a copy of ``config``."""
  config = ConfigDict(config.to_dict())
  for item in overrides:
    if "=" not in item:
      raise ConfigError(f"override must look like key.path=value, got {item!r}")
    key, text = item.split("=", 1)
    key = key.removeprefix("--config.").removeprefix("config.")
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
      if part not in node:
        raise ConfigError(f"unknown config section {part!r} in {key!r}")
      node = node[part]
    if leaf not in node:
      raise ConfigError(
          f"unknown config field {key!r}; known in this section: "
          f"{', '.join(sorted(node.keys()))}")
    value = parse_value(text)
    old = node[leaf]
    if isinstance(old, (tuple, list)) and isinstance(value, (int, float)):
      value = (value,)
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    if isinstance(old, tuple) and isinstance(value, list):
      value = tuple(value)
    if isinstance(old, bool) and text.lower() in ("true", "false"):   # shell habits
      value = text.lower() == "true"
    try:
      node[leaf] = value
    except TypeError as e:
      raise ConfigError(f"bad type for {key!r}: {e}") from None
  return config


def add_config_arguments(parser: argparse.ArgumentParser, default: str | None = None,
                         required: bool | None = None, what: str = "config file (configs/*.py)"):
  """Adds ``--config FILE``; ``parse_args`` collects the ``--config.a.b=v`` overrides.

  Args:
    parser: the command's parser.
    default: the config file used without ``--config``.
    required: whether ``--config`` must be given (default: when there is no default).
    what: what the config file is, for ``--help``.
  """
  parser.add_argument(
      "--config", default=default, required=default is None if required is None else required,
      help=f"{what}; override any field with --config.a.b=value (repeatable)")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None):
  """Parses ``argv``, splitting off ``--config.x=y`` (or ``--config.x y``) overrides.

  Returns ``(args, config)``: the config file with the overrides applied (None
  without ``--config``); ``args.config_overrides`` lists the overrides as
  ``--config.x=y`` strings, in order.

  Raises:
    ConfigError: the config file or an override cannot be applied (a bad
      input, reported in one line); usage errors exit through ``parser.error``.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides, rest = [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config."):
      if "=" in arg:
        overrides.append(arg)
      elif i + 1 < len(argv):
        overrides.append(f"{arg}={argv[i + 1]}")
        i += 1
      else:
        parser.error(f"{arg} needs a value")
    else:
      rest.append(arg)
    i += 1
  args = parser.parse_args(rest)
  config = None
  if getattr(args, "config", None):
    config = load_config(args.config, overrides)
  elif overrides:
    parser.error("--config.* overrides need --config FILE")
  args.config_overrides = overrides
  return args, config


def to_json(config: ConfigDict) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def from_json(text: str) -> ConfigDict:
  """Inverse of ``to_json``; lists become tuples, as config files write them."""
  def fix(node):
    if isinstance(node, dict):
      return {k: fix(v) for k, v in node.items()}
    if isinstance(node, list):
      return tuple(fix(v) for v in node)
    return node
  return ConfigDict(fix(json.loads(text)))


def ablation_of_paper(ablation_file: str, override: Callable[[ConfigDict], ConfigDict]):
  """``get_config()`` body for ablation files: the override applied to paper.py."""
  configs_root = os.path.dirname(os.path.dirname(os.path.abspath(ablation_file)))
  return override(load_config(os.path.join(configs_root, "paper.py")))
