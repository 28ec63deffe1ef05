"""BSS Eval v4 distortion filters: one least-squares fit per track.

Every estimate is projected on the span of ``filter_taps`` delayed copies
(0 .. filter_taps-1 samples) of every reference channel, and of its own
reference's channels alone; museval (``mode="v4"``) fits these filters once,
on the whole track.  The normal equations need the Gram matrix of all delayed
reference channels and their correlations with the estimates: lagged
cross-correlations over the whole track, computed here block by block with
FFTs (overlap-save), so that memory does not grow with the track.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from attnsep_jax.bsseval.stems import padded_slice

CORRELATION_FFT = 8192    # samples per FFT of the block-wise correlations
EPS = float(np.finfo(np.float64).eps)   # museval's ridge on the Gram diagonal


def on_cpu() -> bool:
  """Whether new arrays go to a CPU (``jax.default_device``, else the backend)."""
  platform = getattr(jax.config.jax_default_device, "platform", None)
  return (platform or jax.default_backend()) == "cpu"


def blocks_per_call() -> int:
  """Blocks per jitted call: one compilation for any track length.  On CPU a
  few blocks whose FFTs stay in cache run 3x faster than big batches."""
  return 4 if on_cpu() else 64


def _block_samples(filter_taps: int) -> int:
  """Block hop: a block plus its lags either side fills one FFT without wrap."""
  return CORRELATION_FFT - 2 * (filter_taps - 1)


@functools.partial(jax.jit, static_argnames=("filter_taps",), donate_argnums=0)
def _accumulate(spectra, ref_piece, est_core, *, filter_taps: int):
  """Adds one group of blocks to the running cross-spectra.

  Args:
    spectra: (2*S*C, S*C, F) complex running sum of conj(X) Y: X runs over
      reference then estimate channels, Y over reference channels.
    ref_piece: (S, blocks * block + 2 * (filter_taps - 1), C) references of
      the group with filter_taps - 1 samples of context either side.
    est_core: (S, blocks * block, C) estimates of the group.
    filter_taps: filter length (largest lag + 1).
  """
  sources, core_samples, channels = est_core.shape
  block = _block_samples(filter_taps)
  blocks = core_samples // block
  lag_span = 2 * (filter_taps - 1)
  # (S, samples, C) -> (S*C, samples), rows source-major as in museval.
  refs = ref_piece.astype(jnp.float64).transpose(0, 2, 1).reshape(sources * channels, -1)
  ests = est_core.astype(jnp.float64).transpose(0, 2, 1).reshape(sources * channels, -1)
  # Overlapping reference segments, one per block: (blocks, S*C, block + lag_span).
  segments = jnp.stack([refs[:, b * block:b * block + block + lag_span] for b in range(blocks)])
  # Block cores of references then estimates: (blocks, 2*S*C, block).
  core = jnp.concatenate([refs[:, filter_taps - 1:filter_taps - 1 + core_samples], ests])
  core = core.reshape(2 * sources * channels, blocks, block).transpose(1, 0, 2)
  x = jnp.fft.rfft(core, n=CORRELATION_FFT)                       # (blocks, X, F)
  y = jnp.fft.rfft(segments, n=CORRELATION_FFT)                   # (blocks, Y, F)
  return spectra + jnp.sum(jnp.conj(x)[:, :, None] * y[:, None], axis=0)


def lag_correlations(references: np.ndarray, estimates: np.ndarray,
                     filter_taps: int) -> jax.Array:
  """Cross-correlations over the whole track at lags -(taps-1) .. taps-1.

  Args:
    references: (S, T, C) reference stems.
    estimates: (S, T, C) estimates.
    filter_taps: filter length (largest lag + 1).
  Returns:
    (2*S*C, S*C, 2*filter_taps - 1) float64: ``[x, y, k + taps - 1] =
    sum_n x[n] y[n + k]``, x over reference then estimate channels
    (source-major), y over reference channels.
  """
  sources, length, channels = references.shape
  block = _block_samples(filter_taps)
  lag_context = filter_taps - 1
  group = blocks_per_call() * block
  spectra = jnp.zeros((2 * sources * channels, sources * channels,
                       CORRELATION_FFT // 2 + 1), jnp.complex128)
  for start in range(0, length, group):
    ref_piece = padded_slice(references, start - lag_context, group + 2 * lag_context)
    spectra = _accumulate(spectra, ref_piece, padded_slice(estimates, start, group),
                          filter_taps=filter_taps)
  return jnp.fft.irfft(spectra, n=CORRELATION_FFT)[..., :2 * filter_taps - 1]


def _gram(reference_lags: jax.Array, filter_taps: int) -> jax.Array:
  """(P*L, P*L) Gram matrix of delayed reference channels, museval's layout.

  Row (p, a) is channel p delayed by a samples: G[(p, a), (q, b)] = rho_pq(a - b).
  Pairs p > q take rho_qp mirrored, so that G is exactly symmetric as in museval.
  """
  channels = reference_lags.shape[0]
  mirrored = jnp.flip(reference_lags.transpose(1, 0, 2), axis=-1)   # rho_qp(-k) = rho_pq(k)
  upper = jnp.triu(jnp.ones((channels, channels), bool))[..., None]
  lags = jnp.where(upper, reference_lags, mirrored)
  delays = jnp.arange(filter_taps)
  gram = lags[:, :, delays[:, None] - delays[None, :] + filter_taps - 1]   # (P, P, L, L)
  return gram.transpose(0, 2, 1, 3).reshape(channels * filter_taps, channels * filter_taps)


@functools.partial(jax.jit, static_argnames=("sources", "least_squares"))
def _solve(lags, *, sources: int, least_squares: bool = False):
  """Filters on all references and on each estimate's own reference.

  Args:
    lags: lag_correlations' output.
    sources: number of sources S.
    least_squares: museval's fallback when the solve fails: lstsq on G.
  Returns:
    (all_filters (S_ref, C_in, L, S_est, C_out), own_filters (S, C_in, L, C_out)).
  """
  references = lags.shape[1]                       # S*C
  channels = references // sources
  filter_taps = (lags.shape[2] + 1) // 2
  gram = _gram(lags[:references], filter_taps)
  # Correlation of estimate channel e with reference channel p delayed by m:
  # lag k = -m.  (S*C, P, L) -> (P*L, S*C), museval's D with estimates as columns.
  cross = lags[references:, :, filter_taps - 1::-1]
  rhs = cross.transpose(1, 2, 0).reshape(references * filter_taps, references)
  own_size = channels * filter_taps
  if least_squares:
    solve = lambda a, b: jnp.linalg.lstsq(a, b)[0]
  else:
    gram = gram + EPS * jnp.eye(gram.shape[0], dtype=gram.dtype)
    solve = jnp.linalg.solve
  all_filters = solve(gram, rhs)
  # Each source's own diagonal block: (S, C*L, C*L) and (S, C*L, C).
  own_gram = jnp.stack([gram[s * own_size:(s + 1) * own_size, s * own_size:(s + 1) * own_size]
                        for s in range(sources)])
  own_rhs = jnp.stack([rhs[s * own_size:(s + 1) * own_size, s * channels:(s + 1) * channels]
                       for s in range(sources)])
  own_filters = jax.vmap(solve)(own_gram, own_rhs)
  return (all_filters.reshape(sources, channels, filter_taps, sources, channels),
          own_filters.reshape(sources, channels, filter_taps, channels))


def distortion_filters(lags: jax.Array, sources: int) -> tuple[jax.Array, jax.Array]:
  """museval's filters: solve(G + eps I, D), lstsq(G, D) if that fails.

  Args:
    lags: lag_correlations' output.
    sources: number of sources S.
  Returns:
    (all_filters (S_ref, C_in, L, S_est, C_out), own_filters (S, C_in, L, C_out)).
  """
  filters = _solve(lags, sources=sources)
  # numpy raises on an exactly singular matrix, where LU in XLA gives inf/NaN.
  if not all(bool(jnp.all(jnp.isfinite(f))) for f in filters):
    filters = _solve(lags, sources=sources, least_squares=True)
  return filters
