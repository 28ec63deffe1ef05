"""Inference-only exports, and loading a model from an export or a training run.

    attnsep export --checkpoint runs/cpu_small --out exports/cpu_small

An export is a folder with ``export.json`` (format, version, source, the
training step it comes from, parameter count, checksum), ``config.json``
(the full experiment config) and ``params/`` (an Orbax checkpoint of the
parameters only, the EMA ones when the run kept an average).  It is written
to a temporary folder and renamed into place, so it is either complete or
absent.  ``load_model`` accepts an export or a training workdir (its best
checkpoint, or a chosen step) and checks that the parameters fit the model
the config describes.  A workdir or export of a bag (``train.bag_size`` > 1)
loads as a ``models.bag.Bag`` of its members, each at its best checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import jax
import numpy as np

from attnsep_jax import config as config_lib
from attnsep_jax import files
from attnsep_jax.models.bag import Bag, bag_params, build_bag, member_key
from attnsep_jax.models.network import AttnSepNet, abstract_params, build_model, count_params
from attnsep_jax.train.bag import bag_size, member_dir

EXPORT_FILE = "export.json"
EXPORT_FORMAT = "attnsep-jax-export"
EXPORT_VERSION = 1


class ModelLoadError(ValueError):
  """A checkpoint or export that cannot be loaded; the message says why."""


def _shapes(tree) -> dict[str, tuple]:
  return {jax.tree_util.keystr(path): tuple(np.shape(leaf))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def check_params_fit(model: AttnSepNet, params, where: str) -> None:
  """Raises ModelLoadError unless ``params`` has exactly the model's shapes."""
  expected, got = _shapes(abstract_params(model)), _shapes(params)
  problems = [f"missing {k}" for k in sorted(set(expected) - set(got))]
  problems += [f"unexpected {k}" for k in sorted(set(got) - set(expected))]
  problems += [f"{k}: checkpoint {got[k]} vs config {expected[k]}"
               for k in sorted(set(got) & set(expected)) if got[k] != expected[k]]
  if problems:
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    raise ModelLoadError(
        f"{where}: parameters do not fit the model its config describes: "
        + "; ".join(problems[:3]) + more)


def is_export(path: str) -> bool:
  return os.path.isfile(os.path.join(path, EXPORT_FILE))


def load_model(path: str, step: int | None = None
               ) -> tuple[config_lib.ConfigDict, AttnSepNet | Bag, dict]:
  """Loads (config, model, params) from an export or a training workdir.

  Args:
    path: an export folder (attnsep export) or a train.py workdir, whose best
      checkpoint by validation SDR (else the latest) is used, EMA preferred.
    step: that checkpoint of a training workdir instead (an export holds one).
  Raises:
    ModelLoadError: missing, unreadable, corrupt or incompatible checkpoint.
  """
  config, params, _ = _read_params(path, step)
  return config, _model_for(config, params, path), params


def _read_params(path: str, step: int | None) -> tuple[config_lib.ConfigDict, dict, int | None]:
  """(config, params, training step they come from, None if unknown) of an
  export or a training workdir; ModelLoadError says what is wrong."""
  if not os.path.exists(path):
    raise ModelLoadError(f"checkpoint {path} does not exist")
  if not os.path.isdir(path):
    raise ModelLoadError(f"checkpoint {path} is not a directory (give an export "
                         "folder or a training workdir)")
  if not is_export(path):
    return _read_workdir(path, step)
  if step is not None:
    raise ModelLoadError(f"{path} is an export, which holds one state; a step "
                         "can be chosen only from a training workdir")
  return _read_export(path)


def _read_export(path: str) -> tuple[config_lib.ConfigDict, dict, int | None]:
  import orbax.checkpoint as ocp
  from attnsep_jax.train.checkpoint import tree_checksum

  try:
    with open(os.path.join(path, EXPORT_FILE)) as f:
      meta = json.load(f)
    with open(os.path.join(path, "config.json")) as f:
      config = config_lib.from_json(f.read())
  except (OSError, ValueError) as e:
    raise ModelLoadError(f"export {path} is damaged: {e}") from None
  if meta.get("format") != EXPORT_FORMAT or meta.get("version", 0) > EXPORT_VERSION:
    raise ModelLoadError(f"export {path} has an unknown format {meta.get('format')!r} "
                         f"version {meta.get('version')!r}")
  try:
    params = ocp.StandardCheckpointer().restore(os.path.abspath(os.path.join(path, "params")))
  except Exception as e:  # Orbax raises many types for a damaged folder.
    raise ModelLoadError(f"export {path}: cannot read params/: {e}") from None
  if meta.get("checksum") and tree_checksum(params) != meta["checksum"]:
    raise ModelLoadError(f"export {path}: parameters do not match their checksum "
                         "(the files were changed or truncated)")
  return config, params, meta.get("step")


def _read_workdir(path: str, step: int | None) -> tuple[config_lib.ConfigDict, dict, int | None]:
  config = _bag_config(path)
  if config is None:
    return _read_run(path, step)
  if step is not None:
    raise ModelLoadError(f"{path} holds a bag of {bag_size(config)} models, each at its "
                         "best checkpoint; a step can be chosen only from one member's "
                         f"workdir ({member_dir(path, 0)})")
  members = []
  for index in range(bag_size(config)):
    try:
      members.append(_read_run(member_dir(path, index), None)[1])
    except ModelLoadError as e:
      raise ModelLoadError(f"{path} holds a bag of {bag_size(config)} models; member "
                           f"{index}: {e}") from None
  return config, bag_params(members), None


def _bag_config(path: str) -> config_lib.ConfigDict | None:
  """The config of the bag a training workdir holds, or None for one model."""
  try:
    with open(os.path.join(path, "config.json")) as f:
      config = config_lib.from_json(f.read())
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    raise ModelLoadError(f"workdir {path}: cannot read config.json: {e}") from None
  return config if bag_size(config) > 1 else None


def _read_run(path: str, step: int | None) -> tuple[config_lib.ConfigDict, dict, int]:
  from attnsep_jax.train.checkpoint import CheckpointError, restore_inference_params
  # Orbax warns (through absl) that a read-only manager does not save.
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    return restore_inference_params(path, step=step)
  except CheckpointError as e:
    raise ModelLoadError(str(e)) from None
  finally:
    absl_logger.setLevel(level)


def _model_for(config, params, path: str) -> AttnSepNet | Bag:
  """The model ``config`` describes, once ``params`` are checked to fit it."""
  size = bag_size(config)
  try:
    model = build_model(config.model) if size == 1 else build_bag(config.model, size)
  except (TypeError, ValueError) as e:
    raise ModelLoadError(f"{path}: its config does not describe a model: {e}") from None
  if size == 1:
    check_params_fit(model, params, path)
    return model
  keys = [member_key(i) for i in range(size)]
  if sorted(params) != sorted(keys):
    raise ModelLoadError(f"{path}: a bag of {size} models needs the parameters "
                         f"{', '.join(keys)}, found {', '.join(sorted(params))}")
  for key, member in zip(keys, model.members):
    check_params_fit(member, params[key], f"{path} ({key})")
  return model


def export(checkpoint: str, out: str, force: bool = False, step: int | None = None) -> dict:
  """Writes an inference-only export of ``checkpoint`` (at ``step``, else its
  best by validation SDR, else its latest) to ``out``; returns its metadata."""
  out = os.path.abspath(out)
  if os.path.exists(out) and not force:
    raise FileExistsError(f"{out} exists; use --force to replace it")
  config, params, source_step = _read_params(checkpoint, step)
  _model_for(config, params, checkpoint)
  return write_export(config, params, out, source=os.path.abspath(checkpoint), force=force,
                      step=source_step)


def write_export(config, params, out: str, source: str = "", force: bool = False,
                 step: int | None = None) -> dict:
  """Writes ``params`` and ``config`` as an export folder, atomically; ``step``
  is the training step they come from, when known."""
  import orbax.checkpoint as ocp
  from attnsep_jax.train.checkpoint import tree_checksum

  out = os.path.abspath(out)
  params = jax.tree_util.tree_map(np.asarray, params)
  meta = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "source": source,
          "params": count_params(params), "checksum": tree_checksum(params)}
  if step is not None:
    meta["step"] = int(step)
  needed_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(params))
  intact = ("the previous export there is intact" if os.path.exists(out)
            else "nothing else was changed")
  try:
    with files.staged_folder(out, "the export", overwrite=force, intact=intact) as staging:
      checkpointer = ocp.StandardCheckpointer()
      checkpointer.save(os.path.join(staging, "params"), params)
      checkpointer.wait_until_finished()
      files.write_text(os.path.join(staging, "config.json"), config_lib.to_json(config),
                       "the export's config")
      files.write_json(os.path.join(staging, EXPORT_FILE), meta, "the export's metadata")
  except files.WriteError:
    raise
  except (ValueError, RuntimeError) as e:   # Orbax/TensorStore wrap OS errors
    if not files.is_disk_full(e):
      raise
    raise files.write_error(e, "the export", out, needed_bytes, intact) from e
  meta["bytes"] = files.folder_bytes(out)
  return meta


def main(argv=None) -> int:
  from attnsep_jax import cli
  parser = argparse.ArgumentParser(
      prog=cli.prog("export"),
      description="Write an inference-only export (params, EMA preferred, + config).")
  parser.add_argument("--checkpoint", required=True, help="training workdir or export")
  parser.add_argument("--out", required=True, help="export folder to create")
  parser.add_argument("--force", action="store_true", help="replace an existing --out")
  parser.add_argument("--step", type=int, default=None,
                      help="that checkpoint of a training workdir (default: the best by "
                           "validation SDR, else the latest)")
  args = parser.parse_args(argv)
  try:
    meta = export(args.checkpoint, args.out, args.force, step=args.step)
  except (ModelLoadError, FileExistsError, files.WriteError) as e:
    return cli.fail("export", e)
  source = f" of step {meta['step']}" if "step" in meta else ""
  print(f"exported {meta['params']:,} parameters{source} to {args.out} "
        f"({meta['bytes'] / 2**20:.1f} MiB)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
