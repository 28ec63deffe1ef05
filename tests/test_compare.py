import json
import os
import types

import numpy as np
import pytest

from attnsep_jax import SOURCES, compare, files
from attnsep_jax.evaluation import museval_json
from attnsep_jax.pairing import paired_bootstrap


def _write_folder(folder, sdr_by_track, settings=None):
  """An ``attnsep evaluate`` output folder whose tracks have these SDRs per
  source (every window the same)."""
  for track, sdr in sdr_by_track.items():
    sdr = np.repeat(np.asarray(sdr, float)[:, None], 3, axis=1)       # (sources, windows)
    scores = types.SimpleNamespace(sdr=sdr, sir=sdr, isr=sdr, sar=sdr)
    files.write_json(os.path.join(folder, "model", "test", f"{track}.json"),
                     museval_json(track, scores))
  if settings is not None:
    files.write_json(os.path.join(folder, compare.SETTINGS), settings)


def test_paired_bootstrap_brackets_the_mean_and_collapses_on_constant_differences():
  differences = np.random.default_rng(0).normal(0.5, 1.0, size=40)
  low, high = paired_bootstrap(differences)
  assert low < differences.mean() < high
  assert paired_bootstrap(np.full(10, 0.3)) == pytest.approx((0.3, 0.3))


def test_compare_pairs_tracks_and_lists_what_differs(tmp_path, capsys):
  rng = np.random.default_rng(0)
  base = {f"song{i}": rng.normal(3.0, 2.0, size=4) for i in range(6)}
  gain = np.array([0.4, 0.0, -0.2, 1.0])                 # per source, in SOURCES order
  # One song of the other folder loses, and one is scored by the base alone.
  other = {t: v + gain - (1.5 if t == "song0" else 0.0) for t, v in base.items() if t != "song5"}
  _write_folder(tmp_path / "a", base, {"params_checksum": "x", "inference.soft_mask_power": 1.0})
  _write_folder(tmp_path / "b", other, {"params_checksum": "x", "inference.soft_mask_power": 2.0})
  out = tmp_path / "cmp.json"
  assert compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "inference.soft_mask_power: 1.0 | 2.0" in printed and "params_checksum" not in printed

  result = json.loads(out.read_text())
  d = result["paired"][str(tmp_path / "b")]
  common = [f"song{i}" for i in range(5)]
  expected = np.mean([(other[t] - base[t]).mean() for t in common])
  assert d["tracks_compared"] == 5 and d["tracks_better"] == 4
  assert d["delta_vs_base"] == pytest.approx(expected, abs=1e-6)
  low, high = d["delta_ci95"]
  assert low <= expected <= high
  shifted = {s: np.mean([other[t][k] - base[t][k] for t in common]) for k, s in enumerate(SOURCES)}
  assert d["delta_by_source"] == pytest.approx(shifted, abs=1e-6)
  assert result["folders"][str(tmp_path / "a")]["tracks"] == 6
  medians = np.median(np.stack(list(base.values())), axis=0)   # per source, over tracks
  assert result["folders"][str(tmp_path / "a")]["sdr_avg_median"] == pytest.approx(
      medians.mean(), abs=1e-6)


def test_tracks_with_an_undefined_sdr_are_left_out(tmp_path):
  _write_folder(tmp_path / "a", {"loud": [1.0, 2.0, 3.0, 4.0], "silent": [1.0, np.nan, 3.0, 4.0]})
  assert set(compare.track_sdrs(str(tmp_path / "a"), "model", "test")) == {"loud"}
  _write_folder(tmp_path / "b", {"silent": [1.0, np.nan, 3.0, 4.0]})
  with pytest.raises(compare.CompareError, match="no track has a defined SDR"):
    compare.track_sdrs(str(tmp_path / "b"), "model", "test")


def test_bad_folders_get_one_line(tmp_path, capsys):
  _write_folder(tmp_path / "a", {"one": [1.0] * 4})
  _write_folder(tmp_path / "b", {"two": [1.0] * 4})
  (tmp_path / "empty").mkdir()
  cases = [([str(tmp_path / "a"), str(tmp_path / "empty")], "has no model scores"),
           ([str(tmp_path / "a"), str(tmp_path / "b")], "no scored track in common"),
           ([str(tmp_path / "a"), str(tmp_path / "a")], "named twice")]
  for argv, message in cases:
    assert compare.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("attnsep compare: error:")
  (tmp_path / "a" / "model" / "test" / "one.json").write_text("{truncated")
  assert compare.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
  assert "is not a museval track file" in capsys.readouterr().err
