"""Training augmentations, as Demucs (v2/v3) and Open-Unmix do them.

Pure NumPy on one example's stems ``(sources, time, channels)``; every random
choice comes from the explicit ``np.random.Generator`` argument, so an example
is a pure function of its generator's seed.  The mixture is never augmented:
it is rebuilt with ``mix`` from the augmented sources.

Two augmentations act on *where* a chunk is read rather than on samples, so
they are split into a plan (which track, which offset) and a pure crop:
``remix_tracks`` (each source from a possibly different track) and
``time_shift`` (each source cropped at its own offset from a longer read).
"""

from __future__ import annotations

import numpy as np


def mix(sources: np.ndarray) -> np.ndarray:
  """The mixture of ``(..., sources, time, channels)`` stems: their sum."""
  return sources.sum(axis=-3, dtype=np.float32)


def remix_tracks(rng: np.random.Generator, num_sources: int, weights: np.ndarray,
                 probability: float = 1.0) -> tuple[np.ndarray, bool]:
  """Track index per source: independent draws with ``probability``, else one track.

  Args:
    rng: the example's generator.
    num_sources: sources per example.
    weights: sampling weight per track (e.g. its length), any positive scale.
    probability: chance that this example is a remix across tracks.
  Returns:
    ``(tracks, remixed)``: int array ``(num_sources,)`` of track indices (all
    equal when not remixed; a remix may draw the same track twice, at another
    position) and whether the example is a remix.
  """
  p = np.asarray(weights, np.float64)
  p = p / p.sum()
  if rng.random() < probability:
    return rng.choice(len(p), size=num_sources, p=p), True
  return np.full(num_sources, rng.choice(len(p), p=p)), False


def time_shift(long_sources: np.ndarray, rng: np.random.Generator,
               segment_samples: int) -> np.ndarray:
  """Crops each source of a longer read at its own random offset.

  Args:
    long_sources: ``(sources, segment_samples + shift, channels)``.
    rng: the example's generator.
    segment_samples: length of the crop.
  Returns:
    ``(sources, segment_samples, channels)``, views into ``long_sources``
    when there is no shift.
  """
  offsets = shift_offsets(rng, long_sources.shape[0], long_sources.shape[1] - segment_samples)
  if not offsets.any():
    return long_sources[:, :segment_samples]
  out = np.empty((long_sources.shape[0], segment_samples) + long_sources.shape[2:],
                 long_sources.dtype)
  for i, o in enumerate(offsets):
    out[i] = long_sources[i, o:o + segment_samples]
  return out


def shift_offsets(rng: np.random.Generator, num_sources: int, shift: int) -> np.ndarray:
  """Crop offset per source, uniform in [0, shift] samples (time_shift's draw)."""
  if shift < 0:
    raise ValueError(f"read is {-shift} samples shorter than the segment")
  return rng.integers(0, shift + 1, size=num_sources)


def varispeed_factor(rng: np.random.Generator, probability: float,
                     max_semitones: float) -> float:
  """Playback-speed factor of one example: 1 (untouched) with 1 - ``probability``,
  else 2^(u / 12) for u uniform in [-max_semitones, max_semitones]."""
  if probability <= 0 or rng.random() >= probability:
    return 1.0
  return float(2.0 ** (rng.uniform(-max_semitones, max_semitones) / 12.0))


def varispeed(long_sources: np.ndarray, samples: int) -> np.ndarray:
  """Plays every source of a read faster or slower, as a tape would: a read of
  ``samples * factor`` frames resampled to ``samples`` raises pitch and tempo
  together by ``factor``.  HT Demucs trains with pitch and tempo changes
  ("repitch"); moving every partial and formant is also what makes another
  soundfont's instruments less foreign to the model.

  Args:
    long_sources: ``(sources, frames, channels)``, the read.
    samples: frames wanted after resampling.
  Returns:
    ``(sources, samples, channels)`` float32.
  """
  import soxr
  out = np.zeros((long_sources.shape[0], samples, long_sources.shape[2]), np.float32)
  for i, source in enumerate(long_sources):
    resampled = soxr.resample(source, long_sources.shape[1], samples, quality="LQ")
    out[i, :min(samples, len(resampled))] = resampled[:samples]
  return out


def random_eq(sources: np.ndarray, rng: np.random.Generator, probability: float,
              max_db: float, sample_rate: int = 44100, num_bands: int = 8) -> np.ndarray:
  """Reshapes the spectrum of each source with its own smooth random EQ curve.

  A new soundfont changes every instrument's spectral envelope (another kick
  drum, another piano); a random equaliser per stem shows the model many
  envelopes of each instrument so that it separates by what the stems do
  rather than by one sample set's timbre.  The curve has ``num_bands`` gains
  drawn uniformly in [-max_db, max_db] dB at log-spaced frequencies from 40 Hz
  to 16 kHz, interpolated in log-frequency (flat beyond the ends), and is
  applied to both channels as one zero-phase filter through the FFT of the
  segment (the smooth curve's impulse response is a few ms, so the circular
  wrap is negligible).

  Args:
    sources: ``(sources, time, channels)``.
    rng: the example's generator.
    probability: chance that each source is equalised (0: never).
    max_db: largest boost or cut of a band, in dB.
    sample_rate: of ``sources``, in Hz.
    num_bands: anchor frequencies of the curve.
  Returns:
    ``(sources, time, channels)`` float32 (``sources`` itself when no source
    is equalised).
  """
  num, samples = sources.shape[0], sources.shape[1]
  chosen = rng.random(num) < probability
  gains_db = rng.uniform(-max_db, max_db, size=(num, num_bands))
  if not chosen.any():
    return sources
  import scipy.fft   # float32 transforms, 3x numpy's complex128 ones
  freqs = np.fft.rfftfreq(samples, 1.0 / sample_rate)
  log_freqs = np.log(np.maximum(freqs, 1.0))
  anchors = np.linspace(np.log(40.0), np.log(16000.0), num_bands)
  out = np.array(sources, np.float32)
  for i in np.flatnonzero(chosen):
    curve = 10.0 ** (np.interp(log_freqs, anchors, gains_db[i]) / 20.0)   # (bins,)
    spectrum = scipy.fft.rfft(out[i], axis=0)                             # (bins, channels)
    out[i] = scipy.fft.irfft(spectrum * curve[:, None].astype(np.float32), n=samples, axis=0)
  return out


def random_gain(sources: np.ndarray, rng: np.random.Generator,
                gain_range: tuple[float, float] = (0.25, 1.25)) -> np.ndarray:
  """Scales each source by a gain drawn uniformly from ``gain_range`` (linear)."""
  low, high = gain_range
  gains = rng.uniform(low, high, size=sources.shape[0]).astype(np.float32)
  return sources * gains[:, None, None]


def channel_swap(sources: np.ndarray, rng: np.random.Generator,
                 probability: float = 0.5) -> np.ndarray:
  """Swaps left and right of each source independently with ``probability``."""
  swap = rng.random(sources.shape[0]) < probability
  out = sources.copy()
  out[swap] = sources[swap][..., ::-1]
  return out


def polarity_flip(sources: np.ndarray, rng: np.random.Generator,
                  probability: float = 0.5) -> np.ndarray:
  """Negates each source independently with ``probability``."""
  signs = np.where(rng.random(sources.shape[0]) < probability, -1.0, 1.0).astype(np.float32)
  return sources * signs[:, None, None]


def rms_db(audio: np.ndarray, axis=(-2, -1)) -> np.ndarray:
  """RMS level in dB relative to full scale (a full-scale sine is -3 dB)."""
  power = np.mean(np.square(audio, dtype=np.float64), axis=axis)
  return 10.0 * np.log10(np.maximum(power, 1e-20))


def augment_sources(sources: np.ndarray, rng: np.random.Generator,
                    gain_range: tuple[float, float] | None = (0.25, 1.25),
                    swap_channels: bool = True, flip_polarity: bool = True,
                    out: np.ndarray | None = None) -> np.ndarray:
  """The sample-level augmentations in Demucs's order: gain, channel swap, sign.

  Same draws and result as ``random_gain``, ``channel_swap`` and
  ``polarity_flip`` applied in turn, in one pass over the samples (the
  loader's hot loop: three passes over 10 s stems cost more than the read).

  Args:
    sources: ``(sources, time, channels)``, already cropped.
    rng: the example's generator.
    gain_range: (low, high) linear gain per source, or None for no gain.
    swap_channels: random left/right swap per source.
    flip_polarity: random sign per source.
    out: optional float32 array of the same shape to write into.
  """
  num = sources.shape[0]
  scale = np.ones(num, np.float32)
  if gain_range is not None:
    scale *= rng.uniform(gain_range[0], gain_range[1], size=num).astype(np.float32)
  swap = rng.random(num) < 0.5 if swap_channels else np.zeros(num, bool)
  if flip_polarity:
    scale *= np.where(rng.random(num) < 0.5, -1.0, 1.0).astype(np.float32)
  if out is None:
    out = np.empty(sources.shape, np.float32)
  for i in range(num):
    np.multiply(sources[i, :, ::-1] if swap[i] else sources[i], scale[i], out=out[i])
  return out
