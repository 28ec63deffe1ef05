"""The pure training and evaluation steps, data-parallel over one axis.

Both functions run under ``jax.pmap(..., axis_name=AXIS)`` (see
``distributed.pmap_train_step``): every device holds a replica of the state
and its shard of the global batch, and the only cross-device communication is
``lax.pmean`` over ``AXIS``.  Written this way they port to ``jax.shard_map``
with ``in_specs=(P(), P(AXIS), P())`` unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax import lax

from attnsep_jax import SOURCES
from attnsep_jax.losses import separation_loss
from attnsep_jax.metrics import utterance_sdr
from attnsep_jax.train.state import TrainState

AXIS = "batch"


def source_names(num_sources: int) -> tuple[str, ...]:
  return SOURCES if num_sources == len(SOURCES) else tuple(
      f"source{i}" for i in range(num_sources))


def ema_decay_at(decay: float, updates: jax.Array) -> jax.Array:
  """EMA decay after ``updates`` optimiser updates: min(decay, (1+n)/(10+n)).

  The ramp (as in tf.train.ExponentialMovingAverage) keeps the average from
  being dominated by the random initialisation early in a run.
  """
  updates = updates.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + updates) / (10.0 + updates))


def train_step(state: TrainState, batch: dict, rng: jax.Array):
  """One optimiser step (or accumulation mini-step) on this device's shard.

  Args:
    state: the replicated TrainState (donated by the caller).
    batch: {"mixture": (b, T, C), "sources": (b, S, T, C)}, this device's
      rows, and with ``optim.decay_clock="time"`` "time_fraction": () float32,
      the share of the time budget spent, which the loop supplies (the same
      on every device) so that the step stays a pure function of its inputs.
    rng: this step's key data (uint32), the same on every device; the device
      index is folded in here for dropout.
  Returns:
    (new state, metrics): a step whose loss or gradient is not finite leaves
    the state unchanged and reports ``finite = 0``, so that the loop can stop
    with the last good parameters.
  """
  key = jax.random.fold_in(jax.random.wrap_key_data(rng), lax.axis_index(AXIS))
  loss_kwargs = dict(state.loss)

  def loss_fn(params):
    estimate = state.model.apply({"params": params}, batch["mixture"], train=True,
                                 rngs={"dropout": key})
    return separation_loss(batch["sources"], estimate, **loss_kwargs, step=state.step)

  (loss, per_source), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  # Every device has the same number of rows, so the mean of the per-device
  # means is the mean over the global batch.
  grads, loss, per_source = lax.pmean((grads, loss, per_source), AXIS)
  grad_norm = optax.tree.norm(grads)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  time_fraction = None
  if state.decays_with_time:
    # Without the loop's figure (a benchmark, a test) the cosine follows the count.
    time_fraction = batch.get("time_fraction", 0.0)
    scale = state.decay_scale(state.step, time_fraction)
    updates = jax.tree.map(lambda u: u * scale, updates)
  params = optax.apply_updates(state.params, updates)

  ema_params = state.ema_params
  if state.ema_decay:
    accumulate = state.accumulate_steps
    # With accumulation only every k-th mini-step moves the parameters.
    updated = (opt_state.mini_step == 0) if accumulate > 1 else True
    num_updates = (state.step + 1) // accumulate
    decay = jnp.where(updated, ema_decay_at(state.ema_decay, num_updates - 1), 1.0)
    ema_params = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p,
                              state.ema_params, params)

  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema_params)
  new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)

  metrics = {"loss": loss, "grad_norm": grad_norm,
             "param_norm": optax.tree.norm(new_state.params),
             "learning_rate": state.learning_rate(state.step, time_fraction),
             "finite": finite.astype(jnp.float32)}
  for name, value in zip(source_names(per_source.shape[0]), per_source):
    metrics[f"loss_{name}"] = value
  return new_state, metrics


def eval_step(state: TrainState, batch: dict):
  """Loss and SDR of the EMA (else current) parameters on this device's shard.

  Args:
    state: the replicated TrainState.
    batch: {"mixture": (b, T, C), "sources": (b, S, T, C)}.
  Returns:
    metrics averaged over the global batch: loss, loss_<source>, sdr_<source>, sdr.
  """
  params = state.ema_params if state.ema_params is not None else state.params
  estimate = state.model.apply({"params": params}, batch["mixture"], train=False)
  loss, per_source = separation_loss(batch["sources"], estimate, **dict(state.loss))
  sdr = utterance_sdr(batch["sources"], estimate).mean(axis=0)   # (sources,)
  loss, per_source, sdr = lax.pmean((loss, per_source, sdr), AXIS)
  metrics = {"loss": loss, "sdr": sdr.mean()}
  for name, l, s in zip(source_names(sdr.shape[0]), per_source, sdr):
    metrics[f"loss_{name}"] = l
    metrics[f"sdr_{name}"] = s
  return metrics
