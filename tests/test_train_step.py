"""The pure train step: data parallelism, learning, tracing, NaN guard, optimiser."""

import jax
import numpy as np
import pytest

from attnsep_jax.config import apply_overrides
from attnsep_jax.train import distributed
from attnsep_jax.train.state import (create_train_state, frozen, learning_rate_schedule,
                                     make_optimizer, resolve_optim_config)
from attnsep_jax.train.step import train_step
from attnsep_jax.train.synthetic import make_example_batch

TRAIN_SEGMENT = 4096  # samples per example: short, so steps are fast
OVERFIT_STEPS = 200
OVERFIT_SDR_DB = 3.0
KEY = np.asarray(jax.random.key_data(jax.random.key(7)))


def _run(state, batches, num_devices):
  """Steps ``state`` through ``batches`` on ``num_devices`` local devices."""
  step = distributed.pmap_train_step()
  replicated = distributed.replicate(state, num_devices)
  metrics = []
  for i, batch in enumerate(batches):
    replicated, m = step(replicated, distributed.shard_batch(batch, num_devices),
                         KEY + np.uint32(i))
    metrics.append({k: float(v[0]) for k, v in jax.device_get(m).items()})
  return state.with_checkpoint_tree(distributed.unreplicate(replicated.checkpoint_tree())), metrics


def _max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_two_devices_match_one_device(train_state):
  assert jax.local_device_count() >= 2, "conftest sets 2 fake CPU devices"
  batches = [make_example_batch(2, TRAIN_SEGMENT, seed=s) for s in (1, 2)]
  two, metrics_two = _run(train_state, batches, 2)
  one, metrics_one = _run(train_state, batches, 1)
  assert int(two.step) == int(one.step) == 2
  assert _max_diff(two.params, train_state.params) > 1e-4   # it did train
  assert _max_diff(two.params, one.params) < 1e-5
  assert _max_diff(two.opt_state, one.opt_state) < 1e-5
  assert _max_diff(two.ema_params, one.ema_params) < 1e-5
  for m2, m1 in zip(metrics_two, metrics_one):
    assert m2.keys() == m1.keys()
    np.testing.assert_allclose([m2[k] for k in m2], [m1[k] for k in m2], rtol=1e-5)


def test_metrics_every_step(train_state):
  _, metrics = _run(train_state, [make_example_batch(2, TRAIN_SEGMENT, seed=3)], 2)
  expected = {"loss", "grad_norm", "param_norm", "learning_rate", "finite",
              "loss_drums", "loss_bass", "loss_other", "loss_vocals"}
  assert set(metrics[0]) == expected
  m = metrics[0]
  assert m["finite"] == 1.0 and m["grad_norm"] > 0 and m["param_norm"] > 0
  assert m["learning_rate"] == pytest.approx(3e-3)
  per_source = [m[f"loss_{s}"] for s in ("drums", "bass", "other", "vocals")]
  assert m["loss"] == pytest.approx(np.mean(per_source), rel=1e-5)


def _loudest_excerpt(sources: np.ndarray, samples: int) -> slice:
  """The excerpt of ``samples`` whose quietest stem is loudest: every stem audible."""
  energy = np.square(sources).sum(axis=-1)                      # (S, T)
  starts = range(0, sources.shape[1] - samples + 1, samples // 4)
  best = max(starts, key=lambda s: energy[:, s:s + samples].mean(axis=1).min())
  return slice(best, best + samples)


def test_overfits_one_song_to_a_real_sdr(train_config, synth_corpus):
  """Step -> parameters -> chunked inference -> SDR, end to end on one excerpt
  of a corpus song: a broken step, loss, model or inference path cannot
  reach a separation this clear (the mixture itself scores about 0 dB)."""
  from attnsep_jax.data.loader import validation_tracks
  from attnsep_jax.inference import separate
  from attnsep_jax.metrics import utterance_sdr
  config = apply_overrides(train_config, ["loss.kind='l1'", "train.ema_decay=0.0"])
  _, mixture, sources = next(validation_tracks(synth_corpus, split="test"))
  excerpt = _loudest_excerpt(sources, 22050)
  mixture, sources = mixture[excerpt], sources[:, excerpt]
  batch = {"mixture": mixture[None], "sources": sources[None]}
  state, metrics = _run(create_train_state(config), [batch] * OVERFIT_STEPS, 1)
  estimate = separate(state.model, state.params, mixture, sample_rate=44100,
                      segment_seconds=0.5, overlap=0.25, batch_size=1)
  sdr = np.asarray(utterance_sdr(sources, estimate))
  before = np.asarray(utterance_sdr(sources, np.repeat(mixture[None], 4, axis=0)))
  assert np.all(np.isfinite([m["loss"] for m in metrics]))
  assert sdr.mean() > OVERFIT_SDR_DB and sdr.min() > before.max(), (sdr, before)


def test_step_compiles_once(train_state):
  traces = []

  def listener(event, duration, **kwargs):
    if event == "/jax/core/compile/jaxpr_trace_duration" and "train_step" in str(
        kwargs.get("fun_name", "")):
      traces.append(kwargs.get("fun_name"))

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    batches = [make_example_batch(2, TRAIN_SEGMENT, seed=s) for s in (5, 6, 7, 8)]
    step = distributed.pmap_train_step()
    replicated = distributed.replicate(train_state)
    counts = []
    for i, batch in enumerate(batches):
      replicated, m = step(replicated, distributed.shard_batch(batch), KEY + np.uint32(i))
      jax.block_until_ready(m)
      counts.append(len(traces))
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  # The first call may trace (unless an earlier test already did); later ones never.
  assert counts[0] <= 1 and counts[-1] == counts[0], counts


def test_step_name_is_seen_by_the_trace_listener(train_config):
  # Guards the test above against passing vacuously: a fresh static config
  # forces a trace, and the listener must see it under train_step's name.
  traces = []

  def listener(event, duration, **kwargs):
    if event == "/jax/core/compile/jaxpr_trace_duration":
      traces.append(str(kwargs.get("fun_name", "")))

  config = apply_overrides(train_config, ["optim.b1=0.8"])
  state = jax.eval_shape(lambda: create_train_state(config))
  batch = make_example_batch(2, TRAIN_SEGMENT, seed=0)
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    jax.eval_shape(jax.pmap(train_step, axis_name="batch", in_axes=(0, 0, None)),
                   jax.tree.map(lambda x: jax.ShapeDtypeStruct((2,) + x.shape, x.dtype), state),
                   distributed.shard_batch(batch), KEY)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert any("train_step" in name for name in traces), traces


def test_non_finite_step_keeps_the_state(train_state):
  good = make_example_batch(2, TRAIN_SEGMENT, seed=9)
  bad = make_example_batch(2, TRAIN_SEGMENT, seed=9, nan=True)
  after_good, _ = _run(train_state, [good], 2)
  after_bad, metrics = _run(train_state, [good, bad], 2)
  assert metrics[0]["finite"] == 1.0 and metrics[1]["finite"] == 0.0
  assert not np.isfinite(metrics[1]["loss"])
  assert int(after_bad.step) == 1
  assert _max_diff(after_bad.params, after_good.params) == 0.0
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(after_bad.checkpoint_tree()))


def test_schedule_warmup_and_cosine():
  schedule = learning_rate_schedule(1e-3, warmup_steps=10, decay="cosine",
                                    final_learning_rate_ratio=0.1, decay_steps=110)
  assert float(schedule(0)) == pytest.approx(1e-4)
  assert float(schedule(9)) == pytest.approx(1e-3)
  assert float(schedule(60)) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5), rel=1e-5)
  assert float(schedule(110)) == pytest.approx(1e-4)
  assert float(schedule(10_000)) == pytest.approx(1e-4)
  constant = learning_rate_schedule(1e-3, 0, "constant", 0.1, 1)
  assert float(constant(0)) == float(constant(500)) == pytest.approx(1e-3)


def test_schedule_follows_the_time_budget_when_it_is_ahead():
  schedule = learning_rate_schedule(1e-3, warmup_steps=10, decay="cosine",
                                    final_learning_rate_ratio=0.1, decay_steps=110)
  assert float(schedule(20, time_fraction=0.5)) == pytest.approx(float(schedule(60)), rel=1e-6)
  assert float(schedule(60, time_fraction=0.1)) == pytest.approx(float(schedule(60)), rel=1e-6)
  assert float(schedule(20, time_fraction=3.0)) == pytest.approx(1e-4)
  assert float(schedule(0, time_fraction=0.5)) == pytest.approx(1e-4 * 0.55)   # warmup too


def _one_step(state, batch, time_fraction):
  """One step on one device, given the share of the time budget spent."""
  sharded = distributed.shard_batch(batch, 1)
  sharded["time_fraction"] = np.full((1,), time_fraction, np.float32)
  new, metrics = distributed.pmap_train_step()(distributed.replicate(state, 1), sharded, KEY)
  return distributed.unreplicate(new.params), float(metrics["learning_rate"][0])


def test_time_clock_scales_the_update_by_the_spent_budget(train_config, train_state):
  config = apply_overrides(train_config, [
      "optim.decay='cosine'", "optim.decay_clock='time'",
      "optim.final_learning_rate_ratio=0.1", "train.time_budget_seconds=60.0"])
  state = create_train_state(config)
  batch = make_example_batch(2, TRAIN_SEGMENT, seed=5)
  start, rate_start = _one_step(state, batch, 0.0)
  half, rate_half = _one_step(state, batch, 0.5)
  assert rate_start == pytest.approx(3e-3) and rate_half == pytest.approx(3e-3 * 0.55)
  # Nothing spent: the update of the count's schedule (here the peak, as in
  # train_state's constant schedule). Adam's first update is linear in the rate.
  by_steps, _ = _run(train_state, [batch], 1)
  assert _max_diff(start, by_steps.params) < 1e-7
  for p0, p_start, p_half in zip(*map(jax.tree.leaves, (state.params, start, half))):
    np.testing.assert_allclose(np.asarray(p_half) - p0, 0.55 * (np.asarray(p_start) - p0),
                               rtol=1e-3, atol=2e-7)   # float32 parameters near 1
  with pytest.raises(ValueError, match="decay_clock must be"):
    make_optimizer(**{**resolve_optim_config(config), "decay_clock": "wall"})


def test_optimizer_options(tiny_config):
  optim = resolve_optim_config(tiny_config)
  assert optim["decay_steps"] == tiny_config.train.num_steps
  with pytest.raises(ValueError, match="adamw"):
    make_optimizer(**{**optim, "weight_decay": 0.1})
  with pytest.raises(ValueError, match="optimizer must be"):
    make_optimizer(**{**optim, "optimizer": "sgd"})
  with pytest.raises(ValueError, match="decay_steps"):
    make_optimizer(**{**optim, "decay_steps": None})
  params = {"w": np.ones(3, np.float32)}
  tx = make_optimizer(**{**optim, "optimizer": "adamw", "weight_decay": 0.1,
                         "accumulate_steps": 2})
  state = tx.init(params)
  grads = {"w": np.full(3, 100.0, np.float32)}
  updates, state = tx.update(grads, state, params)
  assert np.all(np.asarray(updates["w"]) == 0)          # first of two mini-steps
  updates, state = tx.update(grads, state, params)
  assert np.all(np.asarray(updates["w"]) < 0)           # the accumulated update


def test_gradient_accumulation_matches_the_large_batch(train_config, train_state):
  # Two mini-steps of one example each == one step on both (gradient mean).
  accumulate = apply_overrides(train_config, ["optim.accumulate_steps=2"])
  # Same params as train_state; only the optimiser differs (no second init).
  acc_state = train_state.replace(optim=frozen(resolve_optim_config(accumulate)))
  acc_state = acc_state.replace(opt_state=acc_state.tx.init(train_state.params))
  big = make_example_batch(2, TRAIN_SEGMENT, seed=11)
  halves = [{k: v[:1] for k, v in big.items()}, {k: v[1:] for k, v in big.items()}]
  acc_state, acc_metrics = _run(acc_state, halves, 1)
  big_state, _ = _run(train_state, [big], 2)
  assert int(acc_state.step) == 2
  assert _max_diff(acc_state.params, train_state.params) > 1e-4
  assert _max_diff(acc_state.params, big_state.params) < 1e-5
  # The EMA moves only with the real update, as in the one-step run.
  assert _max_diff(acc_state.ema_params, big_state.ema_params) < 1e-5
  assert acc_metrics[0]["learning_rate"] == pytest.approx(3e-3)


@pytest.mark.slow
def test_bfloat16_and_remat_switches(train_config):
  config = apply_overrides(train_config, ["model.dtype=bfloat16", "model.remat_separator=True"])
  state = create_train_state(config)
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(state.params))
  batch = make_example_batch(2, TRAIN_SEGMENT, seed=12)
  trained, metrics = _run(state, [batch] * 3, 2)
  assert all(m["finite"] == 1.0 for m in metrics)
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(trained.params))


def test_eval_step_agrees_with_the_train_step(train_state):
  # A fresh state's EMA equals its params, and dropout is off: the eval loss
  # is the loss the train step reports for the same batch.
  batch = make_example_batch(2, TRAIN_SEGMENT, seed=13)
  _, train_metrics = _run(train_state, [batch], 2)
  metrics = distributed.pmap_eval_step()(distributed.replicate(train_state),
                                         distributed.shard_batch(batch))
  metrics = {k: float(v[0]) for k, v in jax.device_get(metrics).items()}
  assert metrics["loss"] == pytest.approx(train_metrics[0]["loss"], rel=1e-5)
  sdrs = [metrics[f"sdr_{s}"] for s in ("drums", "bass", "other", "vocals")]
  assert np.all(np.isfinite(sdrs)) and metrics["sdr"] == pytest.approx(np.mean(sdrs), rel=1e-5)
