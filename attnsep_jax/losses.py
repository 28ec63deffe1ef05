"""Training losses over stems ``(batch, sources, time, channels)``."""

from typing import Sequence

import jax.numpy as jnp

from attnsep_jax import masking
from attnsep_jax.metrics import utterance_sdr

LOSSES = ("relative_mse", "l1", "mse", "sdr")
# Readings of the paper's |.| in (|x - x̂| / (|x| + |x̂| + eps))²: the absolute
# value of each sample, or the norm of each stem's segment.
REDUCTIONS = ("sample", "segment")
EPS_SCALES = ("absolute", "mixture_rms")
# BS-RoFormer's windows for its multi-resolution STFT term, in samples.
STFT_FFT_SIZES = (4096, 2048, 1024, 512, 256)


def relative_mse(target: jnp.ndarray, estimate: jnp.ndarray, eps) -> jnp.ndarray:
  """The paper's loss, element-wise: (|x - x̂| / (|x| + |x̂| + eps))².

  Bounded in [0, 1] per sample, so loud passages do not dominate the way they
  do under L1/L2; ``eps`` (in waveform units) keeps near-silent samples, where
  the ratio is ill-conditioned, from dominating instead.
  """
  ratio = jnp.abs(target - estimate) / (jnp.abs(target) + jnp.abs(estimate) + eps)
  return jnp.square(ratio)


def rms(x: jnp.ndarray) -> jnp.ndarray:
  """Root mean square over time and channels, kept as (..., 1, 1); the floor
  keeps its gradient finite at 0."""
  return jnp.sqrt(jnp.mean(jnp.square(x), axis=(-2, -1), keepdims=True) + 1e-12)


def segment_relative_mse(target: jnp.ndarray, estimate: jnp.ndarray, eps) -> jnp.ndarray:
  """The paper's formula with |.| read as the norm of each stem's segment:

  (‖x - x̂‖ / (‖x‖ + ‖x̂‖ + eps))² per (batch, source), norms as RMS over
  time and channels.  Still bounded in [0, 1] (triangle inequality) and still
  relative, but to the stem's level rather than to each sample's: near a
  perfect estimate it is 10^(-SDR/10) / 4, so it weighs every stem of every
  example by its SDR instead of by its loudest or quietest samples.

  Returns:
    (batch, sources, 1, 1), broadcastable against the stems.
  """
  ratio = rms(target - estimate) / (rms(target) + rms(estimate) + eps)
  return jnp.square(ratio)


def loss_eps(target: jnp.ndarray, eps: float, eps_scale: str):
  """``eps`` in waveform units, or relative to each example's mixture RMS."""
  if eps_scale == "absolute":
    return eps
  if eps_scale == "mixture_rms":
    mixture = target.sum(axis=1, keepdims=True)      # (batch, 1, time, channels)
    return eps * rms(mixture)                        # (batch, 1, 1, 1)
  raise ValueError(f"eps_scale must be one of {EPS_SCALES}, got {eps_scale!r}")


def frames(x: jnp.ndarray, frame_samples: int) -> jnp.ndarray:
  """(batch, sources, time, channels) -> (batch, sources, frames, frame_samples,
  channels), the tail that fills no frame dropped; one frame if the segment is
  shorter than ``frame_samples``."""
  batch, sources, time, channels = x.shape
  count = max(1, time // frame_samples)
  frame_samples = min(frame_samples, time)
  return x[:, :, :count * frame_samples].reshape(batch, sources, count, frame_samples, channels)


def framed_negative_sdr(target: jnp.ndarray, estimate: jnp.ndarray,
                        frame_samples: int, floor: float) -> jnp.ndarray:
  """-SDR in dB of each stem's frame, the quantity BSS Eval takes the median of.

  10 log10((‖s - ŝ‖² + f) / (‖s‖² + f)) per frame (``metrics.utterance_sdr``
  of each frame, negated), f = ``floor`` times the mixture frame's energy:
  every frame counts alike whatever its level, as in museval's per-second
  SDR, and the floor (-30 dB of the mixture at 1e-3) keeps frames where a
  stem is silent, which museval skips, from pulling harder than the rest.

  Returns:
    (batch, sources, frames, 1), broadcastable against the stems' mean.
  """
  target_frames = frames(target, frame_samples)    # (batch, sources, frames, frame_samples, channels)
  mixture_frames = target_frames.sum(axis=1, keepdims=True)   # (batch, 1, frames, ...)
  # The 1e-8 keeps the log finite on an all-silent example.
  floor_energy = floor * jnp.sum(jnp.square(mixture_frames), axis=(-2, -1)) + 1e-8
  sdr = utterance_sdr(target_frames, frames(estimate, frame_samples), delta=floor_energy)
  return -sdr[..., None]                           # (batch, sources, frames, 1)


def multi_resolution_stft_l1(target: jnp.ndarray, estimate: jnp.ndarray,
                             fft_sizes: Sequence[int]) -> jnp.ndarray:
  """BS-RoFormer's spectral term: the L1 distance of the stems' complex
  STFTs (real and imaginary parts), summed over window sizes.

  (batch, sources, time, channels) -> (sources,). Hann windows, hop a quarter
  of the window (BS-RoFormer: 147 samples at every size). Each spectrum is
  divided by sqrt(window), torch's ``normalized=True``: on a white error each
  size then weighs sqrt(3/16) ~ 0.43 times the waveform L1, where
  BS-RoFormer's unnormalised spectra make the sum over its five sizes about
  80 times the waveform L1.
  """
  # The STFT is linear: one transform of the error per size.
  error = jnp.moveaxis(estimate - target, 2, -1)        # (batch, sources, channels, time)
  total = 0.0
  for fft_size in fft_sizes:
    spec = masking.stft(error, fft_size) / jnp.sqrt(float(fft_size))
    # spec: (batch, sources, channels, frames, bins)
    total = total + (jnp.abs(spec.real) + jnp.abs(spec.imag)).mean(axis=(0, 2, 3, 4)) / 2
  return total


def per_source_loss(target: jnp.ndarray, estimate: jnp.ndarray,
                    kind: str = "relative_mse", eps: float = 1e-3,
                    reduction: str = "sample", eps_scale: str = "absolute",
                    stft_weight: float = 0.0,
                    stft_fft_sizes: Sequence[int] = STFT_FFT_SIZES,
                    sdr_frame_samples: int = 44100, sdr_floor: float = 1e-3
                    ) -> jnp.ndarray:
  """Mean loss of each source: (batch, sources, time, channels) -> (sources,),
  plus ``stft_weight`` times ``multi_resolution_stft_l1``."""
  target = target.astype(jnp.float32)
  estimate = estimate.astype(jnp.float32)
  if kind == "relative_mse":
    if reduction not in REDUCTIONS:
      raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    formula = relative_mse if reduction == "sample" else segment_relative_mse
    elementwise = formula(target, estimate, loss_eps(target, eps, eps_scale))
  elif kind == "l1":
    elementwise = jnp.abs(target - estimate)
  elif kind == "mse":
    elementwise = jnp.square(target - estimate)
  elif kind == "sdr":
    elementwise = framed_negative_sdr(target, estimate, sdr_frame_samples, sdr_floor)
  else:
    raise ValueError(f"unknown loss kind {kind!r}; choose one of {LOSSES}")
  per_source = elementwise.mean(axis=(0, 2, 3))
  if stft_weight:
    per_source = per_source + stft_weight * multi_resolution_stft_l1(
        target, estimate, stft_fft_sizes)
  return per_source


def separation_loss(target: jnp.ndarray, estimate: jnp.ndarray,
                    kind: str = "relative_mse", eps: float = 1e-3,
                    reduction: str = "sample", eps_scale: str = "absolute",
                    l1_warmup_steps: int = 0,
                    source_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                    stft_weight: float = 0.0,
                    stft_fft_sizes: Sequence[int] = STFT_FFT_SIZES,
                    sdr_frame_samples: int = 44100, sdr_floor: float = 1e-3,
                    step=None):
  """Weighted mean over sources of ``per_source_loss``.

  Args:
    target: true stems (batch, sources, time, channels).
    estimate: estimated stems, same shape.
    kind: "relative_mse" (paper), "l1" (Demucs), "mse" or "sdr" (the
      negative SDR of each frame, in dB: ``framed_negative_sdr``).
    eps: stabiliser of relative_mse (see ``eps_scale``).
    reduction: relative_mse per "sample" (the literal reading) or per
      "segment" (|.| as the norm of each stem's segment).
    eps_scale: "absolute" (eps in waveform units) or "mixture_rms" (eps times
      each example's mixture RMS, so the loss ignores the input level).
    l1_warmup_steps: train with L1 for this many steps, then with ``kind``.
    source_weights: one weight per source; normalised to sum to 1.
    stft_weight: weight of BS-RoFormer's multi-resolution STFT L1, added to
      each source's loss (0: off).
    stft_fft_sizes: its window sizes, in samples.
    sdr_frame_samples: "sdr"'s frame, in samples (museval: 1 s).
    sdr_floor: "sdr"'s error-energy floor, as a fraction of the mixture
      frame's energy.
    step: the training step (needed only with ``l1_warmup_steps``).
  Returns:
    (loss scalar, per-source losses (sources,)).
  """
  if target.shape != estimate.shape:
    raise ValueError(f"target {target.shape} and estimate {estimate.shape} differ")
  per_source = per_source_loss(target, estimate, kind, eps, reduction, eps_scale,
                               stft_weight, stft_fft_sizes, sdr_frame_samples, sdr_floor)
  if l1_warmup_steps and step is not None:
    warm = per_source_loss(target, estimate, "l1")
    per_source = jnp.where(step < l1_warmup_steps, warm, per_source)
  weights = jnp.asarray(source_weights, jnp.float32)
  if weights.shape != per_source.shape:
    raise ValueError(
        f"{weights.shape[0]} source_weights for {per_source.shape[0]} sources")
  return jnp.sum(per_source * weights) / jnp.sum(weights), per_source
