"""The utterance SDR (uSDR) of the MDX/SDX challenges, in JAX.

uSDR is not the SDR of published MUSDB18 tables: those are BSS Eval v4
(cSDR: median over 1 s windows, then over tracks), ``attnsep_jax.bsseval``.
The two typically differ by 0.5-1 dB; never compare one with the other.
"""

import jax.numpy as jnp

SDR_DELTA = 1e-7  # the MDX challenge's epsilon


def utterance_sdr(target: jnp.ndarray, estimate: jnp.ndarray,
                  delta: float = SDR_DELTA) -> jnp.ndarray:
  """uSDR in dB (MDX/SDX challenges, Demucs' ``new_sdr``), per example and source.

  10 log10((Σ s² + δ) / (Σ (s - ŝ)² + δ)), summed over time and channels; a
  data set's uSDR is the mean over songs of the whole-song values.

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
