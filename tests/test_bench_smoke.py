"""Smoke runs of bench.peers, train_step, scaling, bsseval and quality.

Tiny model, a few seconds of audio, our side only (no peer venv needed): the
scripts run end to end and write what they promise.  No timing is asserted;
the numbers from machines running tests are meaningless anyway.
"""

import importlib
import json
import math
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO_ROOT, "configs", "tiny.py")


def run_script(name, *args, expect_rc=0):
  # The children share the tests' persistent compilation cache: a re-run
  # compiles from disk, which keeps this file well under a minute.
  cache = os.environ.get("ATTNSEP_JAX_CACHE", os.path.join(REPO_ROOT, ".jax_cache"))
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache, ATTNSEP_JAX_CACHE=cache,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  proc = subprocess.run([sys.executable, "-m", f"bench.{name}", *args], cwd=REPO_ROOT,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == expect_rc, proc.stderr[-3000:]
  return proc


@pytest.mark.parametrize("name", ["peers", "train_step", "scaling", "bsseval", "quality",
                                  "quality_pool", "loader"])
def test_help(name, capsys):
  # In this process: a child per script would pay the import of jax for a usage line.
  module = importlib.import_module(f"bench.{name}")
  with pytest.raises(SystemExit) as exit_info:
    module.main(["--help"])
  assert exit_info.value.code == 0
  assert capsys.readouterr().out.startswith("usage: ")


def test_peers_ours_only_without_peer_venv(tmp_path):
  out = tmp_path / "peers.json"
  proc = run_script("peers", "--config", TINY, "--seconds", "1.5", "--rounds", "1",
                    "--warmup-seconds", "0.5", "--matmul-size", "128",
                    "--peer-venv", str(tmp_path / "absent"), "--json", str(out),
                    "--config.inference.batch_size", "1")
  assert "measuring our side only" in proc.stderr
  result = json.loads(out.read_text())
  assert result["runs"]["ours"][0]["options"]["batch_size"] == 1   # the override reached ours
  (ours,) = result["summary"]
  assert ours["system"] == "ours" and ours["RTF median"] > 0
  assert result["ours_efficiency"]["matmul_gflop_per_call"] > 0
  assert result["matmul_peak_gflops"]["numpy_2_threads"] > 0


def test_train_step(tmp_path):
  out = tmp_path / "train.json"
  run_script("train_step", "--config", TINY, "--steps", "1", "--matmul-size", "128",
             "--json", str(out))
  result = json.loads(out.read_text())
  assert result["step_s"] > 0 and result["compile_s"] > 0
  assert result["matmul_gflop_per_step"] > 0 and result["xla_gflop_per_step"] > 0
  assert result["fraction_of_matmul_peak"] > 0


def test_scaling(tmp_path):
  out, png = tmp_path / "scaling.json", tmp_path / "scaling.png"
  run_script("scaling", "--config", TINY, "--lengths", "1,2", "--batch-sizes", "2",
             "--steps", "1", "--json", str(out), "--plot", str(png),
             "--config.data.segment_seconds=0.5")
  result = json.loads(out.read_text())
  assert result["training"][0]["segment_seconds"] == 0.5   # the override reached the child
  assert [r["seconds"] for r in result["inference"]] == [1.0, 2.0]
  assert result["training"][0]["step_s"] > 0
  assert png.stat().st_size > 0


def test_bsseval_ours_only_on_synthetic_stems(tmp_path):
  out = tmp_path / "bsseval.json"
  # Every core: no taskset, the child keeps the tests' CPU affinity.
  proc = run_script("bsseval", "--lengths", "1.5", "--threads", str(os.cpu_count()),
                    "--no-museval",
                    "--corpus", str(tmp_path / "absent"), "--warmup-seconds", "1",
                    "--json", str(out))
  assert "our side only" in proc.stderr and "| ours |" in proc.stdout
  (row,) = json.loads(out.read_text())["rows"]
  assert row["backend"] == "ours" and row["stems"] == "synthetic" and row["time_s"] > 0
  assert row["peak_rss_mb"] > 0


def test_quality_ours_only(tmp_path, synth_corpus):
  workdir = tmp_path / "quality"
  args = ["ours=" + TINY, "--train-data", synth_corpus, "--test-data", synth_corpus,
          "--minutes", "0.05", "--test-seconds", "1", "--test-tracks", "1",
          "--workdir", str(workdir)]
  proc = run_script("quality", *args)
  result = json.loads((workdir / "quality.json").read_text())
  ours = result["contenders"]["ours"]
  values = [ours["sdr_avg"], *ours["sdr"].values()]
  values += [r["sdr_avg"] for r in result["references"].values()]
  assert len(values) == 7 and all(math.isfinite(v) for v in values)
  (seed,) = ours["seeds"]
  train = seed["train"]
  assert train["steps"] >= 1 and train["params"] > 0
  assert train["stopped"] in ("budget", "train.num_steps")
  assert train["curve"] and train["selected"] in train["curve"]
  assert 0 < train["curve"][-1]["minutes"] <= train["train_seconds"] / 60 + 1e-3
  assert sorted(seed["per_track"]) == result["protocol"]["test_tracks"]
  assert result["corpora"]["test"]["soundfont"]
  for row in ("ours (", "mixture (reference)", "oracle IRM (upper bound)"):
    assert f"| {row}" in proc.stdout
  assert (workdir / "quality.png").stat().st_size > 0

  # Finished work is not redone; a changed training setting is refused.
  again = run_script("quality", *args)
  assert "trained and separated earlier" in again.stderr
  assert json.loads((workdir / "quality.json").read_text())["contenders"]["ours"]["sdr"] == ours["sdr"]
  refused = run_script("quality", *args, "--seeds", "0", "--minutes", "0.1", expect_rc=2)
  assert refused.stderr.count("\n") == 1 and "trained with other settings" in refused.stderr


def test_quality_bad_input(tmp_path, synth_corpus):
  for args, message in [(["nope"], "unknown; give a config file"),
                        (["umx", "--peer-venv", str(tmp_path / "absent")], "no peer venv"),
                        (["ours=" + TINY, "--train-data", str(tmp_path / "absent")],
                         "corpus root does not exist")]:
    proc = run_script("quality", *args, "--test-data", synth_corpus,
                      *(["--train-data", synth_corpus] if "--train-data" not in args else []),
                      "--workdir", str(tmp_path / "q"), expect_rc=2)
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_quality_validation_sdr_is_the_training_loops():
  import numpy as np
  from attnsep_jax.metrics import utterance_sdr
  from bench import _quality_files
  rng = np.random.default_rng(0)
  references = rng.standard_normal((4, 1000, 2)).astype(np.float32)
  estimates = references + 0.3 * rng.standard_normal((4, 1000, 2)).astype(np.float32)
  np.testing.assert_allclose(_quality_files.utterance_sdr(references, estimates),
                             np.asarray(utterance_sdr(references, estimates)), atol=1e-4)


def _quality_module():
  from bench import quality
  return quality


def test_quality_contender_syntax():
  quality = _quality_module()
  named = quality.parse_contender(f"ours_l1={TINY}:loss.kind=l1:optim.learning_rate=3e-4")
  assert (named.name, named.kind, named.config_path) == ("ours_l1", "ours", TINY)
  assert named.overrides == ("loss.kind=l1", "optim.learning_rate=3e-4")
  assert quality.parse_contender(f"{TINY}:loss.kind=l1").name == "tiny"
  demucs = quality.parse_contender("small=demucs:channels=6")
  assert (demucs.name, dict(demucs.options)["channels"]) == ("small", 6)
  assert dict(quality.parse_contender("umx").options)["batch_size"] == 16


def test_quality_ours_curve_is_in_training_time():
  # Validations at wall times 110 s and 160 s, lasting 10 s and 20 s; the last
  # checkpoint (right after the second) records 100 s of training time.
  entries = [{"split": "train", "step": 5, "time": 95.0, "loss": 1.0},
             {"split": "valid", "step": 5, "time": 110.0, "seconds": 10.0, "sdr": 1.0},
             {"split": "valid", "step": 9, "time": 160.0, "seconds": 20.0, "sdr": 2.0,
              "sdr_vocals": 3.0}]
  curve = _quality_module().ours_curve(entries, {"train_seconds": 100.0, "time": 160.5})
  assert [p["step"] for p in curve] == [5, 9] and curve[1]["sdr_vocals"] == 3.0
  # 100 s at 160.5; back to 110: 50.5 s of wall time, 20 s of it validation.
  assert [round(60 * p["minutes"], 6) for p in curve] == [69.5, 99.5]


def test_quality_paired_differences_against_the_first_contender():
  quality = _quality_module()

  def seed(values):   # song -> average SDR, the same for every source
    return {"per_track": {f"song{i}": dict.fromkeys(quality.ORDER, v)
                          for i, v in enumerate(values)}}
  summaries = {"ours": {"seeds": [seed([1.0, 2.0, 3.0])]},
               "umx": {"seeds": [seed([2.0, 2.0, 2.0]), seed([0.0, 3.0, 2.0])]},
               "alone": {"seeds": [seed([1.0])]}}
  differences = quality.paired(summaries)
  assert list(differences) == ["umx", "alone"]
  # umx's seeds averaged per song: 1, 2.5, 2 -> differences 0, +0.5, -1.
  umx = differences["umx"]
  assert umx["delta_vs_base"] == pytest.approx(-1 / 6)
  assert (umx["tracks_better"], umx["tracks_compared"]) == (1, 3)
  assert differences["alone"]["tracks_compared"] == 1   # only the songs both have
  (row, _) = quality.paired_rows(differences, "ours")
  assert row["contender"] == "umx - ours" and row["songs better"] == "1/3"
  assert row["avg [95% CI]"].startswith("-0.17 [")
  assert quality.paired({"ours": summaries["ours"]}) == {}


def _quality_json(path, seeds, machine="cpu A"):
  """A quality.json holding contender "c" with one seed per list of song SDRs."""
  from bench.quality import ORDER
  songs = [f"song{i}" for i in range(len(seeds[0]))]
  entries = [{"seed": k, "sdr_avg": float(sum(v) / len(v)),
              "per_track": {s: dict.fromkeys(ORDER, x) for s, x in zip(songs, v)}}
             for k, v in enumerate(seeds)]
  with open(path, "w") as f:
    json.dump({"machine": {"cpu": machine},
               "protocol": {"test_tracks": songs, "statistic": "median", "budget_minutes": 60},
               "corpora": {"test": {"path": "test"}, "train": {"path": "train"}},
               "contenders": {"c": {"seeds": entries}}}, f)
  return str(path)


def test_quality_pool_gathers_seeds_across_runs(tmp_path, capsys):
  from bench import quality_pool
  one = _quality_json(tmp_path / "one.json", [[1.0, 2.0, 3.0]])
  two = _quality_json(tmp_path / "two.json", [[3.0, 2.0, 3.0], [1.0, 4.0, 5.0]])
  summaries, _ = quality_pool.pool([f"a={one}:c", f"b={one}:c,{two}:c"])
  assert [len(s["seeds"]) for s in summaries.values()] == [1, 3]
  assert quality_pool.main([f"a={one}:c", f"b={one}:c,{two}:c"]) == 0
  out = capsys.readouterr().out
  # b's three seeds averaged per song: 5/3, 8/3, 11/3 -> +2/3 per song against a.
  assert "| b - a | +0.67 | +0.67 | +0.67 | +0.67 | +0.67 [+0.67, +0.67] | 3/3 |" in out
  assert "| b | 3 | 2.00, 2.67, 3.33 | 2.67 | 0.67 |" in out


def test_quality_pool_refuses_other_protocols(tmp_path, capsys):
  from bench import quality_pool
  one = _quality_json(tmp_path / "one.json", [[1.0, 2.0]])
  other = _quality_json(tmp_path / "other.json", [[1.0, 2.0]], machine="cpu B")
  assert quality_pool.main([f"a={one}:c", f"b={other}:c"]) == 2
  assert quality_pool.main([f"a={one}:missing"]) == 2
  assert quality_pool.main(["a=nothing"]) == 2
  errors = capsys.readouterr().err.splitlines()
  assert len(errors) == 3 and "machine" in errors[0] and "no 'missing'" in errors[1]
