"""TrainState (params, optimiser state, EMA, step, RNG) and the optimiser.

The state's static fields are the hashable configs it was built from (the
model definition, the optimiser and loss settings), not closures: two states
built from equal configs have equal tree structures, so a jitted/pmapped step
is traced once however often the state is rebuilt (restore, tests).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax

from attnsep_jax.config import ConfigError
from attnsep_jax.models.network import AttnSepNet, build_model, init_params

OPTIMIZERS = ("adam", "adamw")
DECAYS = ("cosine", "constant")
DECAY_CLOCKS = ("steps", "time")


def learning_rate_schedule(learning_rate: float, warmup_steps: int, decay: str,
                           final_learning_rate_ratio: float,
                           decay_steps: int) -> Callable[..., jax.Array]:
  """Linear warmup then cosine (or no) decay.

  Args:
    learning_rate: peak learning rate, reached after ``warmup_steps`` updates.
    warmup_steps: updates of linear warmup; the first update already uses
      ``learning_rate / warmup_steps`` (a zero first step would waste a batch).
    decay: "cosine" (to ``final_learning_rate_ratio * learning_rate`` at
      ``decay_steps``) or "constant".
    final_learning_rate_ratio: end of the cosine, relative to the peak.
    decay_steps: update count at which the cosine ends (warmup included).
  Returns:
    schedule(count, time_fraction=None) -> learning rate (float32 scalar).
    ``time_fraction`` (the share of a time budget spent, for
    ``decay_clock="time"``) moves the cosine on when it is ahead of the count.
  """
  if decay not in DECAYS:
    raise ConfigError(f"decay must be one of {DECAYS}, got {decay!r}")
  warmup = max(int(warmup_steps), 0)
  cosine_steps = max(int(decay_steps) - warmup, 1)

  def schedule(count, time_fraction=None):
    count = jnp.asarray(count, jnp.float32)
    warm = jnp.minimum(1.0, (count + 1.0) / max(warmup, 1)) if warmup else 1.0
    if decay == "constant":
      return learning_rate * warm
    progress = jnp.clip((count - warmup) / cosine_steps, 0.0, 1.0)
    if time_fraction is not None:
      progress = jnp.maximum(progress, jnp.clip(time_fraction, 0.0, 1.0))
    cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    ratio = final_learning_rate_ratio + (1.0 - final_learning_rate_ratio) * cosine
    return learning_rate * warm * ratio

  return schedule


def make_optimizer(optimizer: str = "adam", learning_rate: float = 3e-4,
                   warmup_steps: int = 1000, decay: str = "cosine",
                   final_learning_rate_ratio: float = 0.01,
                   weight_decay: float = 0.0, grad_clip_norm: float = 5.0,
                   accumulate_steps: int = 1, b1: float = 0.9, b2: float = 0.999,
                   decay_steps: int | None = None,
                   decay_clock: str = "steps") -> optax.GradientTransformation:
  """The optimiser of ``config.optim``: clip -> Adam(W) with a schedule, accumulated.

  Args:
    optimizer: "adam" or "adamw" (decoupled weight decay).
    learning_rate: peak learning rate.
    warmup_steps: linear warmup, in optimiser updates.
    decay: "cosine" or "constant" after the warmup.
    final_learning_rate_ratio: cosine end value relative to the peak.
    weight_decay: AdamW's decoupled decay (must be 0 for "adam").
    grad_clip_norm: clip gradients to this global norm; 0 disables.
    accumulate_steps: batches averaged into one update (optax.MultiSteps); the
      schedule counts updates, not batches.
    b1: Adam's first-moment decay.
    b2: Adam's second-moment decay.
    decay_steps: end of the cosine in updates; None means it must be resolved
      by the caller (``resolve_optim_config`` sets it from train.num_steps).
    decay_clock: "steps" (the cosine follows the update count) or "time" (it
      also follows the share of ``train.time_budget_seconds`` spent, whichever
      is further on; without a budget, the count alone). With "time" the
      schedule here stops after the warmup and ``train_step`` scales the
      updates by ``TrainState.decay_scale``: an optax schedule sees only the
      update count.
  Returns:
    an optax GradientTransformation.
  """
  if optimizer not in OPTIMIZERS:
    raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
  if optimizer == "adam" and weight_decay:
    raise ConfigError("weight_decay needs optimizer='adamw' (Adam has no decoupled decay)")
  if accumulate_steps < 1:
    raise ConfigError(f"accumulate_steps must be >= 1, got {accumulate_steps}")
  if decay_steps is None:
    raise ConfigError("decay_steps is None: resolve it with resolve_optim_config(config)")
  if decay_clock not in DECAY_CLOCKS:
    raise ConfigError(f"decay_clock must be one of {DECAY_CLOCKS}, got {decay_clock!r}")
  schedule = learning_rate_schedule(learning_rate, warmup_steps,
                                    decay if decay_clock == "steps" else "constant",
                                    final_learning_rate_ratio, decay_steps)
  if optimizer == "adamw":
    opt = optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay)
  else:
    opt = optax.adam(schedule, b1=b1, b2=b2)
  if grad_clip_norm:
    opt = optax.chain(optax.clip_by_global_norm(grad_clip_norm), opt)
  if accumulate_steps > 1:
    opt = optax.MultiSteps(opt, every_k_schedule=accumulate_steps).gradient_transformation()
  return opt


def resolve_optim_config(config) -> dict:
  """``config.optim`` as keyword arguments, with ``decay_steps`` filled in.

  A None ``decay_steps`` means "the whole run": train.num_steps batches, i.e.
  num_steps / accumulate_steps updates.
  """
  optim = dict(config.optim)
  if optim.get("decay_steps") is None:
    optim["decay_steps"] = max(1, config.train.num_steps // optim.get("accumulate_steps", 1))
  return optim


def frozen(section) -> tuple:
  """A config section as a sorted tuple of items: hashable, compared by value."""
  def freeze(value):
    if isinstance(value, (list, tuple)):
      return tuple(freeze(v) for v in value)
    return value
  return tuple(sorted((k, freeze(v)) for k, v in dict(section).items()))


@functools.lru_cache(maxsize=32)
def _optimizer(optim: tuple) -> optax.GradientTransformation:
  return make_optimizer(**dict(optim))


@struct.dataclass
class TrainState:
  """Everything that changes during training, plus the static recipe.

  Attributes:
    step: number of batches trained on (int32 scalar).
    params: model parameters (float32).
    opt_state: optimiser state.
    ema_params: exponential moving average of ``params``, or None.
    rng: base PRNG key data (uint32); step i uses fold_in(rng, i).
    model: the network definition (static).
    optim: ``make_optimizer`` keyword arguments as a frozen tuple (static).
    loss: ``separation_loss`` keyword arguments as a frozen tuple (static).
    ema_decay: EMA decay, or None/0 for no EMA (static).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any
  rng: jax.Array
  model: AttnSepNet = struct.field(pytree_node=False)
  optim: tuple = struct.field(pytree_node=False)
  loss: tuple = struct.field(pytree_node=False)
  ema_decay: float | None = struct.field(pytree_node=False, default=None)

  @property
  def tx(self) -> optax.GradientTransformation:
    return _optimizer(self.optim)

  @property
  def accumulate_steps(self) -> int:
    return int(dict(self.optim).get("accumulate_steps", 1))

  @property
  def decays_with_time(self) -> bool:
    """Whether the cosine also follows the time budget (``optim.decay_clock``)."""
    return dict(self.optim).get("decay_clock", "steps") == "time"

  def _schedule(self, decay: str):
    optim = dict(self.optim)
    return learning_rate_schedule(optim["learning_rate"], optim["warmup_steps"], decay,
                                  optim["final_learning_rate_ratio"], optim["decay_steps"])

  def learning_rate(self, step, time_fraction=None) -> jax.Array:
    """Learning rate of the update that batch ``step`` contributes to.

    ``time_fraction``: the share of the time budget spent; used only when
    the cosine decays with time.
    """
    return self._schedule(dict(self.optim)["decay"])(
        step // self.accumulate_steps, time_fraction if self.decays_with_time else None)

  def decay_scale(self, step, time_fraction) -> jax.Array:
    """With ``decay_clock="time"``: the factor from the optimiser's warmup-only
    rate to the scheduled one, by which ``train_step`` scales the updates
    (Adam's update is linear in the rate, AdamW's decay term included)."""
    warmup_only = self._schedule("constant")(step // self.accumulate_steps)
    return self.learning_rate(step, time_fraction) / warmup_only

  def checkpoint_tree(self) -> dict:
    """The arrays a checkpoint stores (the static fields come from the config)."""
    return {"step": self.step, "params": self.params, "opt_state": self.opt_state,
            "ema_params": self.ema_params, "rng": self.rng}

  def with_checkpoint_tree(self, tree: dict) -> "TrainState":
    return self.replace(**tree)


def create_train_state(config, model: AttnSepNet | None = None) -> TrainState:
  """A fresh TrainState for ``config`` (params from ``config.seed``).

  Args:
    config: the experiment config (model, optim, loss, train, seed).
    model: the network, if already built from ``config.model``.
  Returns:
    TrainState with single-device arrays.
  """
  model = model or build_model(config.model)
  ema_decay = float(config.train.ema_decay or 0.0) or None
  create = _jitted_create(model, frozen(resolve_optim_config(config)), frozen(config.loss),
                          ema_decay)
  return create(config.seed)


@functools.lru_cache(maxsize=8)
def _jitted_create(model: AttnSepNet, optim: tuple, loss: tuple, ema_decay: float | None):
  def create(seed):
    init_rng, step_rng = jax.random.split(jax.random.key(seed))
    params = init_params(model, init_rng)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        opt_state=_optimizer(optim).init(params),
        ema_params=params if ema_decay else None,
        rng=jax.random.key_data(step_rng), model=model, optim=optim, loss=loss,
        ema_decay=ema_decay)

  # Op-by-op initialisation costs ~1 s per parameter shape on CPU; one jit is
  # fast, and caching it makes a second state of the same recipe free.
  return jax.jit(create)


def abstract_train_state(config, model: AttnSepNet | None = None) -> TrainState:
  """Shapes and dtypes of ``create_train_state(config)``, computing nothing."""
  model = model or build_model(config.model)
  return jax.eval_shape(lambda: create_train_state(config, model))
