"""Bags of models: members trained apart, loaded as one model, stems averaged."""

import os

import jax
import numpy as np
import pytest

from attnsep_jax import masking
from attnsep_jax.config import apply_overrides, from_json
from attnsep_jax.export import ModelLoadError, export, load_model
from attnsep_jax.inference import separate
from attnsep_jax.models.bag import Bag
from attnsep_jax.models.network import count_params
from attnsep_jax.train.bag import member_config, member_dir
from attnsep_jax.train.loop import WorkdirConfigError, train_and_evaluate
from attnsep_jax.train.synthetic import SyntheticLoader, example_tracks

SEGMENT = 4096  # samples per example, as tests/test_train_loop.py (one compile)
TRACKS = example_tracks(num_tracks=2, seconds=0.3)


def _loader():
  return SyntheticLoader(batch_size=2, segment=SEGMENT, seed=3)


@pytest.fixture(scope="module")
def bag_run(tmp_path_factory, train_config):
  config = apply_overrides(train_config, [
      "train.num_steps=2", "train.log_every_steps=2", "train.eval_every_steps=2",
      "train.checkpoint_every_steps=2", "train.bag_size=2", "train.time_budget_seconds=3600"])
  workdir = str(tmp_path_factory.mktemp("bag") / "train")   # bench.quality's run layout
  summary = train_and_evaluate(config, workdir, loader=_loader(), validation_tracks=TRACKS)
  return config, workdir, summary


def _stored_config(workdir):
  with open(os.path.join(workdir, "config.json")) as f:
    return from_json(f.read())


def test_members_train_one_after_another_with_their_own_seeds(bag_run):
  config, workdir, summary = bag_run
  assert [m["step"] for m in summary["members"]] == [2, 2]
  assert _stored_config(workdir).train.bag_size == 2
  members = [_stored_config(member_dir(workdir, i)) for i in range(2)]
  assert [m.seed for m in members] == [config.seed, config.seed + 1]
  assert [m.data.seed for m in members] == [config.data.seed, config.data.seed + 1]
  assert [m.train.bag_size for m in members] == [1, 1]
  first, second = (jax.tree_util.tree_leaves(load_model(member_dir(workdir, i))[2])
                   for i in range(2))
  assert not all(np.allclose(a, b) for a, b in zip(first, second))


def test_bench_quality_reports_a_bag_as_its_members_together(bag_run):
  from bench import quality
  _, workdir, _ = bag_run
  result = quality.ours_train_result(quality.Run(None, 0, os.path.dirname(workdir)))
  single = count_params(load_model(member_dir(workdir, 0))[2])
  assert result["steps"] == 4 and result["params"] == 2 * single
  assert [p["member"] for p in result["curve"]] == [0, 1]
  minutes = [p["minutes"] for p in result["curve"]]
  assert minutes[1] > minutes[0] and result["selected"] in result["curve"]


def test_member_config_shares_out_the_time_budget(train_config):
  config = apply_overrides(train_config, ["train.bag_size=3", "train.time_budget_seconds=90"])
  member = member_config(config, 2)
  assert member.train.time_budget_seconds == 30.0
  assert (member.seed, member.train.bag_size) == (config.seed + 2, 1)
  assert config.train.bag_size == 3 and config.train.time_budget_seconds == 90


def test_a_bag_averages_its_members_stems_and_masks_the_average_once(bag_run):
  _, workdir, _ = bag_run
  _, bag, params = load_model(workdir)
  assert isinstance(bag, Bag) and len(bag.members) == 2
  mixture = np.random.default_rng(0).normal(0, 0.1, (1, SEGMENT, 2)).astype(np.float32)
  stems = [model.apply({"params": p}, mixture)
           for _, model, p in (load_model(member_dir(workdir, i)) for i in range(2))]
  average = (stems[0] + stems[1]) / 2
  np.testing.assert_allclose(bag.apply({"params": params}, mixture), average,
                             rtol=1e-5, atol=1e-6)
  masked = bag.clone(soft_mask_power=1.0, soft_mask_fft_size=1024)
  np.testing.assert_allclose(masked.apply({"params": params}, mixture),
                             masking.soft_mask(mixture, average, 1.0, 1024, 0),
                             rtol=1e-4, atol=1e-6)


def test_a_bag_exports_and_separates_a_track(bag_run, tmp_path):
  _, workdir, _ = bag_run
  meta = export(workdir, str(tmp_path / "bag"))
  single_params = load_model(member_dir(workdir, 0))[2]
  assert meta["params"] == 2 * count_params(single_params)
  config, model, params = load_model(str(tmp_path / "bag"))
  assert isinstance(model, Bag) and config.train.bag_size == 2
  track = np.random.default_rng(1).normal(0, 0.1, (10_000, 2)).astype(np.float32)
  stems = separate(model, params, track, segment_seconds=0.2, batch_size=2)
  assert stems.shape == (4, 10_000, 2) and np.isfinite(stems).all()


def test_a_bag_workdir_refuses_a_step_another_size_and_a_missing_member(bag_run, tmp_path):
  config, workdir, _ = bag_run
  with pytest.raises(ModelLoadError, match="bag of 2 models"):
    load_model(workdir, step=2)
  for size in (1, 3):
    other = apply_overrides(config, [f"train.bag_size={size}"])
    with pytest.raises(WorkdirConfigError, match=f"bag of 2 model.*not {size}"):
      train_and_evaluate(other, workdir, loader=_loader(), validation_tracks=TRACKS)
  unfinished = tmp_path / "unfinished"
  unfinished.mkdir()
  (unfinished / "config.json").write_text(open(os.path.join(workdir, "config.json")).read())
  with pytest.raises(ModelLoadError, match="model_0"):
    load_model(str(unfinished))
