"""Checkpoints: round trip, retention, corruption, interrupted saves, inference params."""

import glob
import json
import os
import shutil

import jax
import numpy as np
import pytest

from attnsep_jax.config import apply_overrides, from_json, to_json
from attnsep_jax.train.checkpoint import (CheckpointError, Checkpointer, config_differences,
                                          restore_inference_params, tree_checksum)
from attnsep_jax.train.state import abstract_train_state


def _host_tree(state, offset=0.0):
  """The state's checkpoint tree as numpy, with params shifted by ``offset``
  so that checkpoints of different steps differ."""
  tree = jax.tree.map(np.asarray, state.checkpoint_tree())
  tree["params"] = jax.tree.map(lambda x: x + np.float32(offset), tree["params"])
  tree["step"] = np.asarray(int(offset), np.int32)
  return tree


def _abstract(config):
  return abstract_train_state(config).checkpoint_tree()


def _equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _save_steps(workdir, config, state, steps, sdr=None, keep=3):
  ckpt = Checkpointer(workdir, keep=keep)
  for step in steps:
    metrics = {"sdr": sdr[step]} if sdr and step in sdr else None
    assert ckpt.save(step, _host_tree(state, step), config,
                     loader_state={"position": step, "rng": np.arange(3)}, metrics=metrics)
  ckpt.close()


def test_round_trip_is_exact_and_self_describing(tmp_path, train_config, train_state):
  _save_steps(tmp_path, train_config, train_state, [2])
  ckpt = Checkpointer(tmp_path)
  tree, meta = ckpt.restore(2, _abstract(train_config))
  ckpt.close()
  assert _equal(tree, _host_tree(train_state, 2))
  assert jax.tree.structure(tree) == jax.tree.structure(_host_tree(train_state, 2))
  assert meta["step"] == 2
  assert json.loads(to_json(train_config)) == meta["config"]
  assert meta["loader"]["position"] == 2
  np.testing.assert_array_equal(meta["loader"]["rng"], np.arange(3))   # numpy survives JSON


def test_keeps_latest_and_best(tmp_path, train_config, train_state):
  # Step 2 has the best SDR; only it and the two latest remain.
  sdr = {2: 5.0, 4: 1.0, 8: 2.0}
  _save_steps(tmp_path, train_config, train_state, [2, 4, 6, 8, 10], sdr=sdr, keep=2)
  ckpt = Checkpointer(tmp_path, keep=2)
  assert ckpt.all_steps() == [2, 8, 10]
  assert ckpt.best_step() == 2
  assert ckpt.latest_step() == 10
  ckpt.close()


def _array_files(step_dir):
  """The data files of the ``state`` item (OCDBT b-tree nodes and chunks)."""
  return [f for f in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
          if os.path.isfile(f)]


def _damage(step_dir, how):
  if how in ("truncate", "garbage"):
    for path in _array_files(step_dir):
      size = os.path.getsize(path)
      with open(path, "r+b") as f:
        if how == "truncate":
          f.truncate(size // 2)
        else:   # same size, different bytes
          f.seek(size // 2)
          f.write(bytes(np.random.default_rng(0).integers(0, 256, size - size // 2, np.uint8)))
  elif how == "meta":
    path = glob.glob(os.path.join(step_dir, "meta", "*"))[0]
    with open(path, "w") as f:
      f.write('{"step": 4, "conf')
  elif how == "checksum":
    # Arrays that read back fine but are not what was written: only the
    # checksum stored beside them can tell.
    path = glob.glob(os.path.join(step_dir, "meta", "*"))[0]
    with open(path) as f:
      meta = json.load(f)
    meta["checksum"] = "0badc0de"
    with open(path, "w") as f:
      json.dump(meta, f)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "meta", "checksum"])
def test_corrupt_latest_falls_back_to_previous(tmp_path, train_config, train_state, damage):
  _save_steps(tmp_path, train_config, train_state, [2, 4])
  _damage(os.path.join(tmp_path, "checkpoints", "4"), damage)
  ckpt = Checkpointer(tmp_path)
  with pytest.raises(CheckpointError, match="checkpoint .*4"):
    ckpt.restore(4, _abstract(train_config))
  step, tree, meta, _ = ckpt.restore_good(_abstract)
  assert step == 2 and meta["step"] == 2
  assert _equal(tree, _host_tree(train_state, 2))
  # The bad one is moved aside, so a later save of step 4 does not collide.
  assert ckpt.all_steps() == [2]
  assert os.listdir(os.path.join(tmp_path, "corrupt_checkpoints"))[0].startswith("4-")
  assert ckpt.save(4, _host_tree(train_state, 4), train_config)
  ckpt.close()


def test_save_killed_midway_leaves_previous_restorable(tmp_path, train_config, train_state):
  _save_steps(tmp_path, train_config, train_state, [2, 4])
  # What a kill during Orbax's save of step 6 leaves: a half-written
  # temporary directory that was never renamed to "6".
  root = os.path.join(tmp_path, "checkpoints")
  partial = os.path.join(root, "6.orbax-checkpoint-tmp-1234567890")
  shutil.copytree(os.path.join(root, "4"), partial)
  _damage(partial, "truncate")
  ckpt = Checkpointer(tmp_path)
  assert ckpt.all_steps() == [2, 4]
  step, tree, _, _ = ckpt.restore_good(_abstract)
  assert step == 4 and _equal(tree, _host_tree(train_state, 4))
  assert not os.path.exists(partial)   # cleaned up when the manager opened
  assert ckpt.save(6, _host_tree(train_state, 6), train_config)
  ckpt.close()


def test_restore_inference_params_prefers_ema_and_best(tmp_path, train_config, train_state):
  _save_steps(tmp_path, train_config, train_state, [2, 4, 6], sdr={2: 1.0, 4: 3.0, 6: 2.0})
  config, params, step = restore_inference_params(str(tmp_path))
  assert step == 4
  assert config.model.to_dict() == train_config.model.to_dict()
  assert _equal(params, _host_tree(train_state, 4)["ema_params"])
  assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(params))
  _, params6, step = restore_inference_params(str(tmp_path / "checkpoints"), step=6)
  assert step == 6 and _equal(params6, _host_tree(train_state, 6)["ema_params"])
  with pytest.raises(CheckpointError, match="step 5"):
    restore_inference_params(str(tmp_path), step=5)


def test_export_of_a_chosen_step(tmp_path, train_config, train_state, capsys):
  from attnsep_jax.export import ModelLoadError, export, load_model
  from attnsep_jax.export import main as export_main
  _save_steps(tmp_path / "run", train_config, train_state, [2, 4, 6], sdr={2: 1.0, 4: 3.0, 6: 2.0})
  export(str(tmp_path / "run"), str(tmp_path / "best"))
  export(str(tmp_path / "run"), str(tmp_path / "at6"), step=6)
  for name, step in (("best", 4), ("at6", 6)):
    _, _, params = load_model(str(tmp_path / name))
    assert _equal(params, _host_tree(train_state, step)["ema_params"])
    with open(tmp_path / name / "export.json") as f:
      assert json.load(f)["step"] == step
  # An export of an export keeps the step its parameters come from.
  assert export(str(tmp_path / "at6"), str(tmp_path / "again"))["step"] == 6
  with pytest.raises(ModelLoadError, match="export, which holds one state"):
    load_model(str(tmp_path / "at6"), step=6)
  assert export_main(["--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "at5"),
                      "--step", "5"]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "step 5" in err
  assert not os.path.exists(tmp_path / "at5")


def test_restore_inference_params_without_ema(tmp_path, train_config, train_state):
  config = apply_overrides(train_config, ["train.ema_decay=0.0"])
  state = train_state.replace(ema_params=None, ema_decay=None)
  _save_steps(tmp_path, config, state, [2])
  _, params, _ = restore_inference_params(str(tmp_path))
  assert _equal(params, _host_tree(state, 2)["params"])


def test_restore_inference_params_errors(tmp_path, train_config, train_state):
  with pytest.raises(CheckpointError, match="does not exist"):
    restore_inference_params(str(tmp_path / "missing"))
  with pytest.raises(CheckpointError, match="no checkpoints"):
    restore_inference_params(str(tmp_path))
  os.makedirs(tmp_path / "checkpoints")
  with pytest.raises(CheckpointError, match="no checkpoints"):
    restore_inference_params(str(tmp_path))
  _save_steps(tmp_path / "run", train_config, train_state, [2])
  _damage(os.path.join(tmp_path, "run", "checkpoints", "2"), "truncate")
  with pytest.raises(CheckpointError, match="no usable checkpoint"):
    restore_inference_params(str(tmp_path / "run"))
  assert isinstance(CheckpointError("x"), ValueError)


def test_checksum_and_config_differences(train_config):
  tree = {"a": np.arange(4, dtype=np.float32), "b": None}
  changed = {"a": np.array([0, 1, 2, 3.0001], np.float32), "b": None}
  assert tree_checksum(tree) == tree_checksum({"a": np.arange(4, dtype=np.float32), "b": None})
  assert tree_checksum(tree) != tree_checksum(changed)
  other = apply_overrides(train_config, ["model.channels=(4, 16)", "train.num_steps=99",
                                         "optim.learning_rate=1.0", "data.root='/elsewhere'",
                                         "data.seed=1"])
  diffs = config_differences(train_config, other)
  assert sorted(d.split(":")[0] for d in diffs) == [
      "data.seed", "model.channels", "optim.learning_rate"]


def _edited(config, edit):
  tree = json.loads(to_json(config))
  edit(tree)
  return from_json(json.dumps(tree))


def test_a_field_an_older_workdir_lacks_stands_for_its_default(train_config):
  # A workdir written before model.mixture_consistency and data.eq_probability
  # existed: resuming with them at their defaults is the same experiment.
  at_defaults = apply_overrides(train_config, ["model.mixture_consistency=False",
                                               "data.eq_probability=0.0"])
  older = _edited(at_defaults, lambda t: (t["model"].pop("mixture_consistency"),
                                          t["data"].pop("eq_probability")))
  assert config_differences(older, at_defaults) == []
  assert config_differences(at_defaults, older) == []       # an older config file, likewise
  changed = apply_overrides(at_defaults, ["model.mixture_consistency=True",
                                          "data.eq_probability=0.5"])
  assert sorted(d.split(":")[0] for d in config_differences(older, changed)) == [
      "data.eq_probability", "model.mixture_consistency"]
  # A field no builder knows is still a difference.
  unknown = _edited(at_defaults, lambda t: t["model"].update(typo=1))
  assert config_differences(at_defaults, unknown) == [
      "model.typo: '<absent>' in the workdir, 1 requested"]
