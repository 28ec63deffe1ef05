"""The ablation study end to end on a tiny corpus: train, evaluate, resume, report."""

import json
import os

import numpy as np
import pytest

from attnsep_jax.ablate import cli as ablate_cli
from attnsep_jax.ablate import report, study
from attnsep_jax.config import apply_overrides


def test_two_variant_study_resumes_and_reports(synth_corpus, tiny_config, repo_root,
                                               tmp_path, capsys):
  workdir = str(tmp_path / "study")
  ablation = os.path.join(repo_root, "configs", "ablations", "no_channel_attention.py")
  base_file = os.path.join(repo_root, "configs", "tiny.py")
  common = ["--config", base_file, "--ablations", ablation, "--data", synth_corpus,
            "--workdir", workdir, "--test-seconds", "1.0",
            "--config.train.eval_every_steps=2", "--config.train.checkpoint_every_steps", "2"]

  # An interrupted study: the base finished, the variant stopped at step 2 of 4.
  ablate_cli.main(common + ["--steps", "4", "--only", "base"])
  base_result = os.path.join(workdir, "base", "seed_0", study.RESULT_FILE)
  assert json.load(open(base_result))["num_steps"] == 4
  variant = study.variant_config(
      tiny_config, ablation, data_root=synth_corpus, steps=2, seed=0,
      overrides=["train.eval_every_steps=2", "train.checkpoint_every_steps=2"])
  from attnsep_jax.train.loop import train_and_evaluate
  train_and_evaluate(variant, os.path.join(workdir, "no_channel_attention", "seed_0"))
  capsys.readouterr()

  mtime = os.path.getmtime(base_result)
  ablate_cli.main(common + ["--steps", "4"])
  out = capsys.readouterr().out
  assert "[base] finished earlier" in out
  assert "resumed from step 2" in out
  assert os.path.getmtime(base_result) == mtime

  summary = json.load(open(os.path.join(workdir, "ablations.json")))["summary"]
  assert set(summary) == {"base", "no_channel_attention"}
  entry = summary["no_channel_attention"]
  assert entry["params"] < summary["base"]["params"]
  assert entry["num_tracks"] == 2 and len(entry["delta_ci95"]) == 2
  low, high = entry["delta_ci95"]
  assert low <= entry["delta_vs_base"] <= high
  for name in ("ablations.md", "ablation_sdr.png", "ablation_curves.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  table = open(os.path.join(workdir, "ablations.md")).read()
  assert "| no_channel_attention |" in table and "| base |" in table
  assert "Scored on the 2 test tracks of" in table and "(first 1 s of each)" in table

  base_stored = json.load(open(base_result))
  assert base_stored["selected_step"] in (2, 4)
  assert "museval_sdr" not in base_stored
  assert base_stored["test_seconds"] == 1.0

  # Another scoring protocol re-scores the trained variants without training.
  checkpoints = sorted(os.listdir(os.path.join(workdir, "base", "seed_0", "checkpoints")))
  ablate_cli.main([a if a != "1.0" else "0.5" for a in common] + ["--steps", "4"])
  out = capsys.readouterr().out
  assert out.count("trained earlier; scoring it on the test subset") == 2
  assert "training to step" not in out
  assert json.load(open(base_result))["test_seconds"] == 0.5
  assert sorted(os.listdir(os.path.join(workdir, "base", "seed_0", "checkpoints"))) == checkpoints

  # A finished variant trained with another config is an error, not a result.
  assert ablate_cli.main(common + ["--steps", "4", "--only", "base",
                                   "--config.optim.learning_rate=0.5"]) == 1
  err = capsys.readouterr().err
  assert "optim.learning_rate" in err
  assert err.startswith("attnsep ablate: error: ") and err.count("\n") == 1
  assert json.load(open(base_result))["test_seconds"] == 0.5

  # --report-only tabulates without training anything; with --museval it
  # scores the finished variants with BSS Eval v4 first.
  os.remove(os.path.join(workdir, "ablations.md"))
  ablate_cli.main(["--workdir", workdir, "--report-only", "--museval"])
  out = capsys.readouterr().out
  assert "| base |" in out and "[base] scoring the test subset with museval" in out
  table = open(os.path.join(workdir, "ablations.md")).read()
  assert "museval SDR" in table and table.count("| no_channel_attention |") == 2
  payload = json.load(open(os.path.join(workdir, "ablations.json")))
  assert set(payload["summary_museval"]) == {"base", "no_channel_attention"}
  museval_scores = json.load(open(base_result))["museval_sdr"]
  assert set(museval_scores) == set(json.load(open(base_result))["test_sdr"])
  assert all(np.isfinite(v) for track in museval_scores.values() for v in track.values())


def test_summary_statistics_by_hand():
  def result(seed, values):
    return {"seed": seed, "num_steps": 1, "params": 10, "step_seconds": 0.5,
            "test_sdr": {f"t{i}": {s: v for s in ("drums", "bass", "other", "vocals")}
                         for i, v in enumerate(values)}}
  results = {"base": [result(0, [1.0, 2.0, 3.0])],
             "better": [result(0, [2.0, 3.0, 4.0]), result(1, [2.0, 3.0, 6.0])]}
  summary = report.summarize(results)
  assert summary["base"]["sdr_avg"] == pytest.approx(2.0)
  # seeds: means 3.0 and 3.667 -> mean 3.333, std 0.333
  assert summary["better"]["sdr_avg"] == pytest.approx(10 / 3)
  assert summary["better"]["sdr_avg_seed_std"] == pytest.approx(1 / 3)
  # per-track differences after averaging seeds: 1, 1, 2
  assert summary["better"]["delta_vs_base"] == pytest.approx(4 / 3)
  assert summary["better"]["delta_by_source"]["bass"] == pytest.approx(4 / 3)
  assert (summary["better"]["tracks_better"], summary["better"]["tracks_compared"]) == (3, 3)
  assert summary["better"]["significant"]
  low, high = summary["better"]["delta_ci95"]
  assert 1.0 <= low <= high <= 2.0


def test_museval_table_leaves_out_unscored_variants_and_selected_step():
  scores = {"t0": {s: 1.0 for s in ("drums", "bass", "other", "vocals")}}
  results = {"base": [{"seed": 0, "num_steps": 1, "params": 1, "test_sdr": scores,
                       "museval_sdr": scores}],
             "other": [{"seed": 0, "num_steps": 1, "params": 1, "test_sdr": scores}]}
  assert set(report.summarize(results)) == {"base", "other"}
  assert set(report.summarize(results, metric="museval_sdr")) == {"base"}
  # The best validation SDR wins; ties go to the earlier step; NaN never wins.
  assert study.selected_step([(250, 0.5), (500, 1.5), (750, 1.5), (1000, float("nan"))]) == 500
  assert study.selected_step([]) is None


def test_unknown_variant_is_an_error(repo_root, tmp_path, capsys):
  assert ablate_cli.main(["--config", os.path.join(repo_root, "configs", "tiny.py"),
                          "--ablations", os.path.join(repo_root, "configs", "ablations"),
                          "--workdir", str(tmp_path), "--only", "nonexistent"]) == 1
  err = capsys.readouterr().err
  assert err.startswith("attnsep ablate: error: unknown variant(s) nonexistent")
  assert err.count("\n") == 1


def test_bad_override_and_missing_config_are_one_line_errors(repo_root, tmp_path, capsys):
  tiny = os.path.join(repo_root, "configs", "tiny.py")
  assert ablate_cli.main(["--config", tiny, "--workdir", str(tmp_path),
                          "--config.model.nope=1"]) == 1
  assert "unknown config field 'model.nope'" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:   # a usage error: argparse's exit status
    ablate_cli.main(["--workdir", str(tmp_path)])
  assert exit_info.value.code == 2
  assert "--config is required unless --report-only" in capsys.readouterr().err
  assert ablate_cli.main(["--workdir", str(tmp_path), "--report-only"]) == 1
  assert capsys.readouterr().err == (
      f"attnsep ablate: error: no finished variants under {tmp_path}\n")


def test_minutes_budget_reaches_the_config(tiny_config):
  config = study.variant_config(tiny_config, None, data_root=None, steps=100, seed=1,
                                 minutes=1.5)
  assert config.train.time_budget_seconds == 90.0 and config.train.num_steps == 100
  assert config.seed == config.data.seed == 1


def test_ablations_apply_to_any_base(repo_root, tiny_config):
  """The same override file gives a paper-scale and a small variant."""
  from attnsep_jax.config import load_ablation, load_config
  override = load_ablation(os.path.join(repo_root, "configs", "ablations", "fewer_blocks.py"))
  paper = load_config(os.path.join(repo_root, "configs", "paper.py"))
  assert override(apply_overrides(paper, [])).model.num_dual_path_blocks == 3
  small = load_config(os.path.join(repo_root, "configs", "cpu_small.py"))
  assert override(apply_overrides(small, [])).model.num_dual_path_blocks == 1


def test_a_variant_stopped_by_a_signal_is_not_scored(tiny_config, tmp_path, monkeypatch):
  # A SIGTERM ends training early with a checkpoint; the study must neither
  # score that half-trained model nor record it as finished.
  import attnsep_jax.train.loop as loop
  monkeypatch.setattr(loop, "train_and_evaluate",
                      lambda config, workdir: {"step": 2, "stopped_by_signal": True})
  scored = []
  monkeypatch.setattr(study, "evaluate_variant", lambda *a, **k: scored.append(a) or {})
  workdir = str(tmp_path / "variant")
  config = study.variant_config(tiny_config, None, data_root=None, steps=4, seed=0)
  with pytest.raises(study.StudyStopped, match="stopped by a signal at step 2 of 4"):
    study.run_variant("base", config, workdir, None)
  assert not scored and not os.path.exists(os.path.join(workdir, study.RESULT_FILE))
