"""train_and_evaluate: exact resume, divergence, foreign workdirs, outputs."""

import glob
import os
import shutil
import signal
import time

import jax
import numpy as np
import pytest

from attnsep_jax.config import apply_overrides
from attnsep_jax.train.checkpoint import Checkpointer
from attnsep_jax.train.clock import Clock
from attnsep_jax.train.logs import read_metrics
from attnsep_jax.train.loop import (TrainingDivergedError, WorkdirConfigError,
                                    train_and_evaluate)
from attnsep_jax.train.state import abstract_train_state
from attnsep_jax.train.synthetic import SyntheticLoader, example_tracks

SEGMENT = 4096  # samples per example (same shapes as test_train_step: one compile)
TRACKS = example_tracks(num_tracks=2, seconds=0.3)


@pytest.fixture(scope="module")
def loop_config(train_config):
  # Log every 3 steps and checkpoint every 2, so that a resume at step 2 lands
  # inside a logging window (its partial sums must be restored too).
  return apply_overrides(train_config, [
      "train.num_steps=4", "train.log_every_steps=3", "train.eval_every_steps=2",
      "train.checkpoint_every_steps=2", "train.keep_checkpoints=3"])


def _loader(**kwargs):
  return SyntheticLoader(batch_size=2, segment=SEGMENT, seed=3, **kwargs)


def _final_tree(workdir, config, step=None):
  ckpt = Checkpointer(workdir, read_only=True)
  step = ckpt.latest_step() if step is None else step
  tree, meta = ckpt.restore(step, abstract_train_state(config).checkpoint_tree())
  ckpt.close()
  return tree, meta


def _comparable(workdir):
  """metrics.jsonl without wall-clock fields."""
  drop = {"time", "steps_per_sec", "seconds", "train_seconds"}
  return [{k: v for k, v in e.items() if k not in drop} for e in read_metrics(workdir)]


def _assert_same_results(dir_a, dir_b, config):
  tree_a, meta_a = _final_tree(dir_a, config)
  tree_b, meta_b = _final_tree(dir_b, config)
  assert meta_a["step"] == meta_b["step"] == config.train.num_steps
  for x, y in zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
  metrics_a, metrics_b = _comparable(dir_a), _comparable(dir_b)
  assert [(e["split"], e["step"]) for e in metrics_a] == [(e["split"], e["step"]) for e in metrics_b]
  for a, b in zip(metrics_a, metrics_b):
    assert a.keys() == b.keys()
    for key in a:
      if isinstance(a[key], float):
        assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (a["step"], key)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, loop_config):
  """The reference: 4 uninterrupted steps."""
  workdir = str(tmp_path_factory.mktemp("straight"))
  summary = train_and_evaluate(loop_config, workdir, loader=_loader(), validation_tracks=TRACKS)
  return workdir, summary


def test_straight_run_outputs(straight_run, loop_config):
  workdir, summary = straight_run
  assert summary["step"] == 4
  entries = read_metrics(workdir)
  train = [e for e in entries if e["split"] == "train"]
  valid = [e for e in entries if e["split"] == "valid"]
  assert [e["step"] for e in train] == [3, 4]
  assert [e["step"] for e in valid] == [2, 4]
  for key in ("loss", "loss_drums", "loss_vocals", "grad_norm", "param_norm", "learning_rate"):
    assert np.isfinite(train[0][key])
  for key in ("sdr", "sdr_drums", "sdr_bass", "sdr_other", "sdr_vocals", "loss",
              "bss_sdr", "bss_sdr_drums", "bss_sdr_bass", "bss_sdr_other", "bss_sdr_vocals"):
    assert np.isfinite(valid[0][key])
  assert valid[0]["tracks"] == 2
  assert os.path.getsize(os.path.join(workdir, "curves.png")) > 1000
  assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
  assert os.path.exists(os.path.join(workdir, "config.json"))
  ckpt = Checkpointer(workdir, read_only=True)
  assert ckpt.all_steps() == [2, 4]
  assert summary["best_step"] in (2, 4)
  ckpt.close()


def test_crash_and_resume_matches_straight_run(tmp_path, straight_run, loop_config):
  workdir = str(tmp_path / "crashed")
  # Dies while fetching batch 3: step 3 was computed but only step 2 saved.
  with pytest.raises(RuntimeError, match="simulated crash"):
    train_and_evaluate(loop_config, workdir, loader=_loader(fail_at=3), validation_tracks=TRACKS)
  ckpt = Checkpointer(workdir, read_only=True)
  assert ckpt.all_steps() == [2]
  ckpt.close()
  summary = train_and_evaluate(loop_config, workdir, loader=_loader(), validation_tracks=TRACKS)
  assert summary["start_step"] == 2 and summary["step"] == 4
  _assert_same_results(straight_run[0], workdir, loop_config)


class _SignalAt(SyntheticLoader):
  """Sends this process SIGTERM when asked for a given batch (a preemption)."""

  def __init__(self, at, **kwargs):
    super().__init__(batch_size=2, segment=SEGMENT, seed=3, **kwargs)
    self.at = at

  def __iter__(self):
    for batch in super().__iter__():
      if self.position == self.at + 1:
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch


def test_sigterm_saves_and_resume_matches(tmp_path, straight_run, loop_config):
  workdir = str(tmp_path / "preempted")
  summary = train_and_evaluate(loop_config, workdir, loader=_SignalAt(0),
                               validation_tracks=TRACKS)
  assert summary["step"] == 1   # stopped after the first step, with a checkpoint
  assert summary["stopped_by_signal"]
  ckpt = Checkpointer(workdir, read_only=True)
  assert ckpt.all_steps() == [1]
  ckpt.close()
  train_and_evaluate(loop_config, workdir, loader=_loader(), validation_tracks=TRACKS)
  _assert_same_results(straight_run[0], workdir, loop_config)


def test_full_disk_at_a_save_is_one_line_and_the_run_resumes(tmp_path, straight_run,
                                                             loop_config, monkeypatch):
  import orbax.checkpoint as ocp
  from attnsep_jax.files import WriteError
  workdir = str(tmp_path / "full")
  real_save = ocp.CheckpointManager.save

  def save_fills_the_disk(self, step, *args, **kwargs):
    if step != 4:
      return real_save(self, step, *args, **kwargs)
    # What TensorStore leaves and raises when the disk fills up mid-save.
    os.makedirs(os.path.join(workdir, "checkpoints", "4.orbax-checkpoint-tmp", "state"))
    raise ValueError("RESOURCE_EXHAUSTED: Failed to write 4075520 bytes to file 11: "
                     "No space left on device [os_error_code='28']")

  monkeypatch.setattr(ocp.CheckpointManager, "save", save_fills_the_disk)
  with pytest.raises(WriteError) as error:
    train_and_evaluate(loop_config, workdir, loader=_loader(), validation_tracks=TRACKS)
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith(f"cannot write the checkpoint of step 4 to {workdir}/checkpoints: "
                            "no space left on device (about ")
  assert "the checkpoint of step 2 is intact" in message
  assert message.endswith("training resumes from step 2")
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2"]
  monkeypatch.undo()
  summary = train_and_evaluate(loop_config, workdir, loader=_loader(), validation_tracks=TRACKS)
  assert summary["start_step"] == 2 and summary["step"] == 4
  _assert_same_results(straight_run[0], workdir, loop_config)


def test_corrupt_latest_checkpoint_is_skipped_on_resume(tmp_path, straight_run, loop_config):
  workdir = str(tmp_path / "corrupt")
  shutil.copytree(straight_run[0], workdir)
  for path in glob.glob(os.path.join(workdir, "checkpoints", "4", "state", "**", "d", "*"),
                        recursive=True):
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
  summary = train_and_evaluate(loop_config, workdir, loader=_loader(), validation_tracks=TRACKS)
  assert summary["start_step"] == 2 and summary["step"] == 4
  assert os.listdir(os.path.join(workdir, "corrupt_checkpoints"))
  _assert_same_results(straight_run[0], workdir, loop_config)


def test_foreign_workdir_is_refused_and_a_run_can_be_extended(tmp_path, straight_run,
                                                              loop_config):
  workdir = str(tmp_path / "extend")
  shutil.copytree(straight_run[0], workdir)
  before = sorted(glob.glob(os.path.join(workdir, "**"), recursive=True))
  other = apply_overrides(loop_config, ["model.channels=(4, 16)"])
  with pytest.raises(WorkdirConfigError, match="model.channels"):
    train_and_evaluate(other, workdir, loader=_loader(), validation_tracks=TRACKS)
  other = apply_overrides(loop_config, ["data.seed=5"])
  with pytest.raises(WorkdirConfigError, match="data.seed"):
    train_and_evaluate(other, workdir, loader=_loader(), validation_tracks=TRACKS)
  assert sorted(glob.glob(os.path.join(workdir, "**"), recursive=True)) == before
  # Only train.* changed: the run continues from step 4.
  longer = apply_overrides(loop_config, ["train.num_steps=5"])
  summary = train_and_evaluate(longer, workdir, loader=_loader(), validation_tracks=TRACKS)
  assert summary["start_step"] == 4 and summary["step"] == 5
  # Already done: nothing to train, nothing written.
  summary = train_and_evaluate(longer, workdir, loader=_loader(), validation_tracks=TRACKS)
  assert summary["start_step"] == summary["step"] == 5


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, loop_config):
  workdir = str(tmp_path / "nan")
  # Global batch 2 (used by step 3) is NaN.
  with pytest.raises(TrainingDivergedError, match="step 3.*checkpoint \\(step 2\\) is intact"):
    train_and_evaluate(loop_config, workdir, loader=_loader(nan_at=2), validation_tracks=TRACKS)
  ckpt = Checkpointer(workdir, read_only=True)
  assert ckpt.all_steps() == [2]
  ckpt.close()
  tree, _ = _final_tree(workdir, loop_config, step=2)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(tree))


class _SlowLoader(SyntheticLoader):
  """Takes 0.2 s per batch, so that a time budget runs out at a known step."""

  def __iter__(self):
    for batch in super().__iter__():
      time.sleep(0.2)
      yield batch


def test_time_budget_stops_saves_and_is_remembered(tmp_path, loop_config):
  workdir = str(tmp_path / "budget")
  config = apply_overrides(loop_config, ["train.num_steps=5",
                                         "train.time_budget_seconds=0.5"])
  slow = lambda: _SlowLoader(batch_size=2, segment=SEGMENT, seed=3)
  # The budget is checked on logging steps (every 3): 3 batches take >= 0.6 s.
  summary = train_and_evaluate(config, workdir, loader=slow(), validation_tracks=TRACKS)
  assert summary["step"] == 3 and summary["train_seconds"] >= 0.5
  tree, meta = _final_tree(workdir, config)
  assert meta["step"] == 3 and 0.5 <= meta["train_seconds"] < 60
  assert [e["step"] for e in read_metrics(workdir) if e["split"] == "valid"] == [2, 3]
  # The spent budget survives a restart: nothing more is trained ...
  summary = train_and_evaluate(config, workdir, loader=slow(), validation_tracks=TRACKS)
  assert summary["start_step"] == summary["step"] == 3
  # ... until the budget is raised.
  more = apply_overrides(config, ["train.time_budget_seconds=600.0"])
  summary = train_and_evaluate(more, workdir, loader=slow(), validation_tracks=TRACKS)
  assert summary["start_step"] == 3 and summary["step"] == 5


def test_time_clock_decays_the_rate_as_the_budget_is_spent(tmp_path, loop_config, monkeypatch):
  config = apply_overrides(loop_config, [
      "optim.decay='cosine'", "optim.decay_clock='time'", "optim.final_learning_rate_ratio=0.1",
      "train.num_steps=100", "train.time_budget_seconds=60.0", "train.eval_every_steps=6",
      "train.checkpoint_every_steps=6"])
  # The share of the budget the first process reports: at the start, then
  # on each logging step (every 3).
  fractions = iter([0.0, 0.5, 1.0])
  monkeypatch.setattr(Clock, "budget_fraction", lambda self: next(fractions))
  summary = train_and_evaluate(config, str(tmp_path), loader=_loader(), validation_tracks=TRACKS)
  assert summary["step"] == 6
  rates = {e["step"]: e["learning_rate"] for e in read_metrics(str(tmp_path))
           if e["split"] == "train"}
  # decay_steps is 1,000: by the count alone the cosine has hardly begun.
  assert rates[3] == pytest.approx(3e-3, rel=1e-4)
  assert rates[6] == pytest.approx(3e-3 * 0.55, rel=1e-4)


def test_validation_bss_sdr_is_the_window_median_and_nan_when_undefined(loop_config,
                                                                         train_state):
  from attnsep_jax.evaluation import bss_scores
  from attnsep_jax.inference import separate
  from attnsep_jax.models.network import build_model
  from attnsep_jax.train.validation import validate
  model, params = build_model(loop_config.model), train_state.params
  name, mixture, sources = next(iter(TRACKS()))
  valid = validate(model, params, [(name, mixture, sources)], loop_config)
  estimate = separate(model, params, np.asarray(mixture, np.float32),
                      sample_rate=loop_config.data.sample_rate, **loop_config.inference)
  window_sdr = bss_scores(np.asarray(sources, np.float32), estimate,
                          loop_config.data.sample_rate, 1.0, "jax").sdr
  np.testing.assert_allclose(valid["bss_sdr_drums"], np.median(window_sdr[0]), rtol=1e-5)
  silent = np.array(sources, np.float32)
  silent[1] = 0.0   # a silent stem: BSS Eval is undefined on the track, uSDR is not
  valid = validate(model, params, [(name, mixture, silent)], loop_config)
  assert np.isnan(valid["bss_sdr"]) and np.isfinite(valid["sdr"])
