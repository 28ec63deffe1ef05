"""Separation metrics: a fast utterance SDR in JAX for validation.

BSS Eval v4 (museval), the published MUSDB metric, lives in
``attnsep_jax.evaluation``; it is two orders of magnitude slower.
"""

import jax.numpy as jnp

SDR_DELTA = 1e-7  # the MDX challenge's epsilon


def utterance_sdr(target: jnp.ndarray, estimate: jnp.ndarray,
                  delta: float = SDR_DELTA) -> jnp.ndarray:
  """MDX-challenge SDR in dB, per example and source.

  10 log10((Σ s² + δ) / (Σ (s - ŝ)² + δ)), summed over time and channels.

  Args:
    target: (..., time, channels) true stems, e.g. (batch, sources, time, channels).
    estimate: same shape as ``target``.
    delta: stabiliser for silent references and perfect estimates.
  Returns:
    (...) SDR in dB, e.g. (batch, sources).
  """
  target = target.astype(jnp.float32)
  estimate = estimate.astype(jnp.float32)
  signal = jnp.sum(jnp.square(target), axis=(-2, -1))
  error = jnp.sum(jnp.square(target - estimate), axis=(-2, -1))
  return 10.0 * (jnp.log10(signal + delta) - jnp.log10(error + delta))
