"""Smoke runs of bench/peers.py, train_step.py, scaling.py and bsseval.py.

Tiny model, a few seconds of audio, our side only (no peer venv needed): the
scripts run end to end and write what they promise.  No timing is asserted;
the numbers from machines running tests are meaningless anyway.
"""

import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO_ROOT, "configs", "tiny.py")


def run_script(name, *args):
  # The children share the tests' persistent compilation cache: a re-run
  # compiles from disk, which keeps this file well under a minute.
  cache = os.environ.get("ATTNSEP_JAX_CACHE", os.path.join(REPO_ROOT, ".jax_cache"))
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "bench", name), *args],
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.mark.parametrize("name", ["peers.py", "train_step.py", "scaling.py", "bsseval.py"])
def test_help(name):
  assert "usage" in run_script(name, "--help").stdout


def test_peers_ours_only_without_peer_venv(tmp_path):
  out = tmp_path / "peers.json"
  proc = run_script("peers.py", "--config", TINY, "--seconds", "1.5", "--rounds", "1",
                    "--warmup-seconds", "0.5", "--matmul-size", "128",
                    "--peer-venv", str(tmp_path / "absent"), "--json", str(out))
  assert "measuring our side only" in proc.stderr
  result = json.loads(out.read_text())
  (ours,) = result["summary"]
  assert ours["system"] == "ours" and ours["RTF median"] > 0
  assert result["ours_efficiency"]["matmul_gflop_per_call"] > 0
  assert result["matmul_peak_gflops"]["numpy_2_threads"] > 0


def test_train_step(tmp_path):
  out = tmp_path / "train.json"
  run_script("train_step.py", "--config", TINY, "--steps", "1", "--matmul-size", "128",
             "--json", str(out))
  result = json.loads(out.read_text())
  assert result["step_s"] > 0 and result["compile_s"] > 0
  assert result["matmul_gflop_per_step"] > 0 and result["xla_gflop_per_step"] > 0
  assert result["fraction_of_matmul_peak"] > 0


def test_scaling(tmp_path):
  out, png = tmp_path / "scaling.json", tmp_path / "scaling.png"
  run_script("scaling.py", "--config", TINY, "--lengths", "1,2", "--batch-sizes", "2",
             "--steps", "1", "--json", str(out), "--plot", str(png))
  result = json.loads(out.read_text())
  assert [r["seconds"] for r in result["inference"]] == [1.0, 2.0]
  assert result["training"][0]["step_s"] > 0
  assert png.stat().st_size > 0


def test_bsseval_ours_only_on_synthetic_stems(tmp_path):
  out = tmp_path / "bsseval.json"
  # Every core: no taskset, the child keeps the tests' CPU affinity.
  proc = run_script("bsseval.py", "--lengths", "1.5", "--threads", str(os.cpu_count()),
                    "--no-museval",
                    "--corpus", str(tmp_path / "absent"), "--warmup-seconds", "1",
                    "--json", str(out))
  assert "our side only" in proc.stderr and "| ours |" in proc.stdout
  (row,) = json.loads(out.read_text())["rows"]
  assert row["backend"] == "ours" and row["stems"] == "synthetic" and row["time_s"] > 0
  assert row["peak_rss_mb"] > 0
