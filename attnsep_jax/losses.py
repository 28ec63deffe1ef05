"""Training losses over stems ``(batch, sources, time, channels)``."""

from typing import Sequence

import jax.numpy as jnp

LOSSES = ("relative_mse", "l1", "mse")


def relative_mse(target: jnp.ndarray, estimate: jnp.ndarray, eps: float) -> jnp.ndarray:
  """The paper's loss, element-wise: (|x - x̂| / (|x| + |x̂| + eps))².

  Bounded in [0, 1] per sample, so loud passages do not dominate the way they
  do under L1/L2; ``eps`` (in waveform units) keeps near-silent samples, where
  the ratio is ill-conditioned, from dominating instead.
  """
  ratio = jnp.abs(target - estimate) / (jnp.abs(target) + jnp.abs(estimate) + eps)
  return jnp.square(ratio)


def per_source_loss(target: jnp.ndarray, estimate: jnp.ndarray,
                    kind: str = "relative_mse", eps: float = 1e-3) -> jnp.ndarray:
  """Mean loss of each source: (batch, sources, time, channels) -> (sources,)."""
  target = target.astype(jnp.float32)
  estimate = estimate.astype(jnp.float32)
  if kind == "relative_mse":
    elementwise = relative_mse(target, estimate, eps)
  elif kind == "l1":
    elementwise = jnp.abs(target - estimate)
  elif kind == "mse":
    elementwise = jnp.square(target - estimate)
  else:
    raise ValueError(f"unknown loss kind {kind!r}; choose one of {LOSSES}")
  return elementwise.mean(axis=(0, 2, 3))


def separation_loss(target: jnp.ndarray, estimate: jnp.ndarray,
                    kind: str = "relative_mse", eps: float = 1e-3,
                    source_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)):
  """Weighted mean over sources of ``per_source_loss``.

  Args:
    target: true stems (batch, sources, time, channels).
    estimate: estimated stems, same shape.
    kind: "relative_mse" (paper), "l1" (Demucs) or "mse".
    eps: stabiliser of relative_mse, in waveform units.
    source_weights: one weight per source; normalised to sum to 1.
  Returns:
    (loss scalar, per-source losses (sources,)).
  """
  if target.shape != estimate.shape:
    raise ValueError(f"target {target.shape} and estimate {estimate.shape} differ")
  per_source = per_source_loss(target, estimate, kind, eps)
  weights = jnp.asarray(source_weights, jnp.float32)
  if weights.shape != per_source.shape:
    raise ValueError(
        f"{weights.shape[0]} source_weights for {per_source.shape[0]} sources")
  return jnp.sum(per_source * weights) / jnp.sum(weights), per_source
