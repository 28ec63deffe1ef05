"""attnsep_jax.bsseval against museval itself, window by window.

Every case runs museval.evaluate(..., mode="v4") on the same input (a few
seconds: museval costs ~2 CPU-s per second of 4-stem audio) and requires
``check.disagreements`` to be empty: NaN in the same windows, every metric
within 0.01 dB, and where museval's value is round-off (above 100 dB) ours
above 100 dB too.
"""

import threading
import warnings

import jax
import jax.numpy as jnp
import museval
import numpy as np
import pytest

from attnsep_jax import SOURCES
from attnsep_jax.bsseval import bss_eval_v4
from attnsep_jax.bsseval.check import (ROUND_OFF_DB, disagreements, max_differences,
                                       museval_scores)
from attnsep_jax.data.loader import validation_tracks

RATE = 44100


def matches_museval(references, estimates, **window):
  """(ours, museval's) after asserting that they agree."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)   # museval's log10(0)
    theirs = museval_scores(references, estimates, **window)
  ours = bss_eval_v4(references, estimates, **window)
  assert disagreements(ours, theirs) == [], max_differences(ours, theirs)
  print("max |ours - museval| (dB):", max_differences(ours, theirs))
  return ours, theirs


@pytest.fixture(scope="module")
def stems(synth_corpus):
  """(4, 3 s, 2) float32 sources of a built-in corpus test track."""
  _, _, sources = next(validation_tracks(synth_corpus, split="test", max_seconds=3.0))
  return np.asarray(sources, np.float32)


def test_random_signals_with_silent_windows_are_nan_where_museval_says():
  rng = np.random.default_rng(0)
  references = rng.standard_normal((4, 3 * RATE, 2)).astype(np.float32)
  estimates = references + 0.5 * rng.standard_normal(references.shape).astype(np.float32)
  estimates += 0.2 * references[[1, 2, 3, 0]]
  references[2, RATE:2 * RATE] = 0.0                   # a silent reference window
  estimates[1, 2 * RATE:] = 0.0                        # a silent estimate window
  ours, theirs = matches_museval(references, estimates)
  assert np.isnan(theirs.sdr[:, 1:]).all() and np.isfinite(ours.sdr[:, 0]).all()


def test_corpus_excerpt_gain_delay_leakage_identity_and_padding(stems):
  rng = np.random.default_rng(1)
  references = stems[:, :int(2.5 * RATE)]
  estimates = np.stack([
      references[0],                                    # equal to the reference
      0.5 * np.roll(references[1], 100, axis=0),        # gain, delay within the filters
      np.roll(references[2], 2000, axis=0),             # delay beyond them
      references[3] + 0.3 * references[0]               # leakage and noise
      + 0.01 * rng.standard_normal(references[3].shape).astype(np.float32)])
  # Estimates shorter than the references are zero-padded, as museval does.
  ours, theirs = matches_museval(references, estimates[:, :-1000])
  assert ours.sdr.shape == (4, 2)                       # the partial last window is dropped
  # An exact estimate: no error energy at all, +inf; museval sums its error
  # from three projections, so round-off leaves it finite (> 300 dB) here.
  assert np.all(np.isposinf(ours.sdr[0])) and np.all(theirs.sdr[0] > ROUND_OFF_DB)


# Two sources from here on: museval's cost is mostly its 4 Gram solves, 8x
# cheaper with half the sources.
def test_mono_stems_rank_deficient_gram(stems):
  # Left == right: the Gram matrix is singular up to museval's ridge.
  mono = np.repeat(stems[:2, :int(1.5 * RATE)].mean(axis=-1, keepdims=True), 2, axis=-1)
  matches_museval(mono, 0.8 * mono + 0.1 * mono[::-1])


def test_track_shorter_than_one_window_float64_longer_estimates(stems):
  references = stems[:2, -int(0.6 * RATE):].astype(np.float64)
  estimates = 0.8 * references + 0.1 * references[::-1]
  # Estimates longer than the references are truncated, as museval does.
  ours, _ = matches_museval(references, np.concatenate([estimates, estimates[:, :500]], axis=1))
  assert ours.sdr.shape == (2, 1)


def test_overlapping_windows(stems):
  estimates = 0.7 * stems[:2, :RATE] + 0.2 * stems[1::-1, :RATE]
  ours, _ = matches_museval(stems[:2, :RATE], estimates,
                            window_samples=RATE // 2, hop_samples=RATE // 4)
  assert ours.sdr.shape == (2, 3)


def test_silent_stem_raises_like_museval(stems):
  references = stems[:, :RATE].copy()
  references[1] = 0.0
  with pytest.raises(ValueError):
    museval.evaluate(references, stems[:, :RATE])
  with pytest.raises(ValueError, match=r"reference source\(s\) \[1\] are silent"):
    bss_eval_v4(references, stems[:, :RATE])


@pytest.mark.parametrize("references, estimates, message", [
    (np.ones((4, 100, 2, 1)), np.ones((4, 100, 2, 1)), "must be .sources, time, channels."),
    (np.ones((4, 100, 2)), np.ones((3, 100, 2)), "differ in sources or channels"),
    (np.ones((4, 100, 2)), np.ones((4, 100, 1)), "differ in sources or channels"),
    (np.ones((4, 100, 2)), np.full((4, 100, 2), np.nan), "estimates contain NaN"),
    (np.ones((4, 0, 2)), np.ones((4, 0, 2)), "empty references"),
])
def test_bad_input_is_a_one_line_error(references, estimates, message):
  with pytest.raises(ValueError, match=message) as error:
    bss_eval_v4(references, estimates)
  assert "\n" not in str(error.value)


@pytest.mark.parametrize("arguments, message", [
    (dict(window_samples=0), "window_samples must be a positive integer"),
    (dict(hop_samples=0.5), "hop_samples must be a positive integer"),
    (dict(filter_taps=4096), "filter_taps must be at most 2048"),
])
def test_bad_parameters_are_one_line_errors(arguments, message):
  with pytest.raises(ValueError, match=message):
    bss_eval_v4(np.ones((2, 100, 2)), np.ones((2, 100, 2)), **arguments)


def test_float64_is_scoped_to_the_call(stems):
  results = []
  worker = threading.Thread(target=lambda: results.append(bss_eval_v4(stems[:, :RATE],
                                                                      stems[:, :RATE])))
  worker.start()
  worker.join()
  assert results and results[0].sdr.dtype == np.float64
  assert not jax.config.jax_enable_x64
  assert jnp.ones(2).dtype == jnp.float32 and jnp.asarray(np.ones(2)).dtype == jnp.float32


def test_disagreements_reports_what_differs():
  shape = (len(SOURCES), 3)
  theirs = [np.full(shape, 5.0) for _ in range(4)]
  assert disagreements(theirs, theirs) == []
  ours = [m.copy() for m in theirs]
  ours[0][0, 0] += 0.02
  ours[1][1, 1] = np.nan
  ours[2][2, 2] = np.inf
  problems = " ".join(disagreements(ours, theirs))
  assert "SDR: differs from museval by up to 0.02" in problems
  assert "ISR: NaN in other windows" in problems and "SIR: infinite" in problems
  high = [np.full(shape, 150.0) for _ in range(4)]
  assert disagreements([m + 30.0 for m in high], high) == []     # round-off regime
  assert "SAR: at most 100 dB" in " ".join(disagreements(
      high[:3] + [np.full(shape, 50.0)], high))
