"""evaluate.py and separate_and_score: BSS Eval numbers equal a direct museval call (both
backends); tables, pictures, resume; silent stems."""

import json
import os
import warnings

import musdb
import museval
import numpy as np
import pytest

from attnsep_jax import SOURCES
from attnsep_jax.bsseval.check import TOLERANCE_DB
from attnsep_jax.evaluation import (aggregate, oracle_irm, score_track, separate_and_score,
                                    track_medians)
from attnsep_jax.export import write_export
from attnsep_jax.inference import separate

import evaluate as evaluate_cli

SECONDS = 1.0


@pytest.fixture(scope="module")
def export_dir(tiny_config, tiny_model_and_params, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("eval") / "export")
  write_export(tiny_config, tiny_model_and_params[1], out)
  return out


def assert_same_track_json(ours, direct, atol):
  """Same targets, frames and times; metrics within ``atol`` dB (NaN alike)."""
  assert [t["name"] for t in ours["targets"]] == [t["name"] for t in direct["targets"]]
  for a, b in zip(ours["targets"], direct["targets"]):
    assert len(a["frames"]) == len(b["frames"]) >= 1
    for fa, fb in zip(a["frames"], b["frames"]):
      assert (fa["time"], fa["duration"]) == (fb["time"], fb["duration"])
      for metric in ("SDR", "SIR", "ISR", "SAR"):
        np.testing.assert_allclose(fa["metrics"][metric], fb["metrics"][metric],
                                   rtol=1e-6, atol=atol, equal_nan=True)


def test_scores_equal_a_direct_museval_eval_mus_track(synth_corpus, export_dir, tiny_config,
                                                      tiny_model_and_params, tmp_path, capsys):
  model, params = tiny_model_and_params
  out = str(tmp_path / "eval")
  db = musdb.DB(root=synth_corpus, is_wav=True, subsets="test")
  track = db.tracks[0]
  args = ["--checkpoint", export_dir, "--musdb", synth_corpus, "--is-wav", "--tracks",
          track.name, "--seconds", str(SECONDS), "--out", out, "--workers", "1", "--quiet"]
  assert evaluate_cli.main(args + ["--check-museval", str(SECONDS)]) == 0
  printed = capsys.readouterr()
  assert "museval cross-check, first 1 s of" in printed.out and "disagree" not in printed.err

  track.chunk_duration = SECONDS
  mixture = track.audio.astype(np.float32)
  estimates = separate(model, params, mixture, sample_rate=44100, **tiny_config.inference)
  direct = json.loads(museval.eval_mus_track(
      track, {name: estimates[i] for i, name in enumerate(SOURCES)}).json)
  model_json = os.path.join(out, "model", "test", f"{track.name}.json")
  # The JSON stores 5 decimals: the JAX backend's numbers round alike up to
  # its 0.01 dB agreement.
  assert_same_track_json(json.load(open(model_json)), direct, atol=TOLERANCE_DB)
  assert json.load(open(os.path.join(out, "results.json")))["backend"] == "jax"

  table = open(os.path.join(out, "results.md")).read()
  assert "this model" in table and "mixture (reference)" in table
  assert "oracle IRM" in table and "NOT this data" in table
  results = json.load(open(os.path.join(out, "results.json")))["results"]
  # The oracle beats the mixture on every source of a real multitrack.
  for source in SOURCES:
    assert results["oracle_irm"]["median"][source]["SDR"] > \
        results["mixture"]["median"][source]["SDR"]

  # The pictures: written, non-empty PNGs, listed in results.md and in the summary.
  pictures = [os.path.join("plots", "sdr_per_track.png"),
              os.path.join("plots", f"spectrograms-{track.name.replace(' ', '_')}.png")]
  for picture in pictures:
    with open(os.path.join(out, picture), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(f.name) > 10_000
    assert f"]({picture})" in table and f"  {picture}: " in printed.out

  # Resume: everything is scored, so a second run only tabulates (and draws
  # the SDR plot again, from the scores).
  mtime = os.path.getmtime(model_json)
  spectrograms_mtime = os.path.getmtime(os.path.join(out, pictures[1]))
  assert evaluate_cli.main(args) == 0
  assert os.path.getmtime(model_json) == mtime
  assert os.path.getmtime(os.path.join(out, pictures[1])) == spectrograms_mtime
  # Another batch of segments per model call changes no stem: it resumes.
  assert evaluate_cli.main(args + ["--batch-size", "1"]) == 0
  assert os.path.getmtime(model_json) == mtime
  assert "inference.batch_size" not in json.load(open(os.path.join(out, "settings.json")))
  # Other inference settings are refused, not mixed with the scores there.
  assert evaluate_cli.main(args + ["--shifts", "2"]) == 1
  err = capsys.readouterr().err
  assert "other settings (inference.shifts 0 -> 2)" in err and len(err.splitlines()) == 1
  assert os.path.getmtime(model_json) == mtime
  # An OUT scored by a version that did not record a setting yet: unchanged
  # while the setting is off, refused once it is on.
  settings_path = os.path.join(out, "settings.json")
  recorded = json.load(open(settings_path))
  del recorded["inference.shifts"]
  json.dump(recorded, open(settings_path, "w"))
  assert evaluate_cli.main(args) == 0
  assert os.path.getmtime(model_json) == mtime
  assert evaluate_cli.main(args + ["--shifts", "2"]) == 1
  assert "inference.shifts None -> 2" in capsys.readouterr().err

  # museval itself, in a worker process: the same JSON as the direct call.
  assert evaluate_cli.main(args + ["--backend", "museval", "--no-references", "--force"]) == 0
  assert_same_track_json(json.load(open(model_json)), direct, atol=0.0)
  assert json.load(open(os.path.join(out, "results.json")))["backend"] == "museval"


def test_bad_arguments_are_one_line_errors(synth_corpus, export_dir, tmp_path, capsys):
  assert evaluate_cli.main(["--checkpoint", str(tmp_path / "none"), "--musdb",
                            synth_corpus, "--is-wav"]) == 1
  err = capsys.readouterr().err
  assert err.startswith("attnsep evaluate: error: ") and "does not exist" in err
  assert len(err.strip().splitlines()) == 1
  assert evaluate_cli.main(["--checkpoint", export_dir, "--musdb", synth_corpus,
                            "--is-wav", "--tracks", "No Such Song"]) == 1
  assert "No Such Song" in capsys.readouterr().err
  assert evaluate_cli.main(["--checkpoint", export_dir, "--musdb", str(tmp_path),
                            "--is-wav"]) == 1
  capsys.readouterr()
  assert evaluate_cli.main(["--checkpoint", export_dir, "--musdb", synth_corpus, "--is-wav",
                            "--soft-mask-power", "0", "--wiener-iterations", "1"]) == 1
  err = capsys.readouterr().err
  assert "soft_mask_power" in err and len(err.strip().splitlines()) == 1


def test_aggregation_is_median_over_frames_then_tracks():
  def track(values):
    return {"targets": [{"name": s, "frames": [
        {"metrics": {m: v for m in ("SDR", "SIR", "ISR", "SAR")}} for v in values]}
        for s in SOURCES]}
  tracks = [track([1.0, 2.0, 9.0]), track([4.0, float("nan"), 6.0]), track([0.0])]
  assert track_medians(tracks[0])["vocals"]["SDR"] == 2.0
  result = aggregate(tracks)
  assert result["median"]["bass"]["SDR"] == 2.0          # median of 2, 5, 0
  np.testing.assert_allclose(result["mean"]["bass"]["SDR"], 7.0 / 3)


def test_track_medians_of_a_silent_stem_is_nan_without_warning():
  nan = float("nan")
  silent = {"name": "silent", "targets": [
      {"name": s, "frames": [{"metrics": {m: nan for m in ("SDR", "SIR", "ISR", "SAR")}}] * 3}
      for s in SOURCES]}
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert np.isnan(track_medians(silent)["vocals"]["SDR"])
    assert np.isnan(aggregate([silent])["median"]["drums"]["SDR"])


def test_oracle_irm_recovers_disjoint_sources():
  rate = 8000
  t = np.arange(rate) / rate
  sources = np.zeros((4, rate, 2), np.float32)
  for i, freq in enumerate((200.0, 700.0, 1500.0, 3000.0)):
    sources[i] = np.sin(2 * np.pi * freq * t)[:, None]
  estimates = oracle_irm(sources.sum(axis=0), sources, fft_size=1024)
  assert estimates.shape == sources.shape
  error = np.abs(estimates[:, 2000:-2000] - sources[:, 2000:-2000]).max()
  assert error < 0.05


def test_separate_and_score_yields_estimates_scores_and_metrics(tiny_config,
                                                               tiny_model_and_params):
  from attnsep_jax.metrics import utterance_sdr
  model, params = tiny_model_and_params
  rng = np.random.default_rng(0)
  sources = (0.1 * rng.normal(size=(4, 44100 + 500, 2))).astype(np.float32)
  silent = sources.copy()
  silent[3] = 0.0   # no vocals: BSS Eval is undefined, the other metrics are not
  tracks = [("noise", sources.sum(axis=0), sources), ("no vocals", silent.sum(axis=0), silent)]
  results = list(separate_and_score(model, params, tracks, sample_rate=44100,
                                    inference=tiny_config.inference,
                                    metrics={"usdr": utterance_sdr}))
  assert [r.name for r in results] == ["noise", "no vocals"]
  first, second = results
  expected = separate(model, params, tracks[0][1], sample_rate=44100, **tiny_config.inference)
  np.testing.assert_array_equal(first.estimates, expected)
  assert first.museval_json() == score_track("noise", sources, expected, 44100)
  np.testing.assert_allclose(first.metrics["usdr"], utterance_sdr(sources, expected))
  assert first.bss_sdr().shape == (4,) and np.all(np.isfinite(first.bss_sdr()))
  assert second.bss is None and "silent reference stem(s) vocals" in second.bss_error
  assert np.all(np.isnan(second.bss_sdr())) and second.metrics["usdr"].shape == (4,)
  with pytest.raises(ValueError, match="no BSS Eval scores"):
    second.museval_json()
  floor = next(separate_and_score(None, None, tracks[:1], sample_rate=44100, method="mixture"))
  np.testing.assert_array_equal(floor.estimates, np.broadcast_to(tracks[0][1], sources.shape))
