"""The evaluation's pictures: per-track SDR per source, and one track's spectrograms.

Drawn with matplotlib's object API (no pyplot state, no display needed) and
written through ``attnsep_jax.files``, so an image is complete or absent.
"""

from __future__ import annotations

import os

import numpy as np

from attnsep_jax import SOURCES, files

LABELS = {"model": "model", "mixture": "mixture", "oracle_irm": "oracle IRM"}
SPECTROGRAM_SECONDS = 10.0   # the excerpt drawn: long enough to see notes and beats
FFT_SIZE, HOP = 2048, 512
LOWEST_HZ = 30.0
FREQUENCY_ROWS = 256          # rows of the log-frequency axis
DYNAMIC_RANGE_DB = 80.0


def _figure(width: float, height: float):
  from matplotlib.figure import Figure
  return Figure(figsize=(width, height), layout="constrained")


def _save(figure, path: str, what: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with files.staged_file(path, what, suffix=".png") as tmp:
    figure.savefig(tmp, format="png", dpi=100)
  return path


def plot_sdr_per_track(per_track: dict, path: str, title: str) -> str:
  """One panel per source: each method's per-track SDR as a box and its points.

  Args:
    per_track: method -> track -> source -> SDR in dB (the track's median
      over its windows).
    path: the PNG to write.
    title: the figure's title (what was evaluated).
  """
  methods = list(per_track)
  figure = _figure(3.0 * len(SOURCES), 4.2)
  axes = figure.subplots(1, len(SOURCES), sharey=True)
  jitter = np.random.default_rng(0)
  for ax, source in zip(axes, SOURCES):
    positions = np.arange(1, len(methods) + 1)
    values = [np.array([scores[source] for scores in per_track[m].values()
                        if np.isfinite(scores.get(source, np.nan))]) for m in methods]
    drawn = [i for i, v in enumerate(values) if len(v)]
    if drawn:
      ax.boxplot([values[i] for i in drawn], positions=positions[drawn], widths=0.5,
                 showfliers=False, medianprops={"color": "black"})
    for x, v in zip(positions, values):
      ax.plot(x + jitter.uniform(-0.15, 0.15, len(v)), v, "o", ms=4, alpha=0.6)
    ax.set_xticks(positions, [LABELS.get(m, m) for m in methods], rotation=20)
    ax.set_title(source)
    ax.grid(axis="y", alpha=0.3)
  axes[0].set_ylabel("SDR (dB): per track, median over 1 s windows")
  figure.suptitle(title)
  return _save(figure, path, "the per-track SDR plot")


def _log_spectrogram_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
  """(FREQUENCY_ROWS, frames) magnitude in dB of (time, channels) audio, on a
  log-frequency axis from LOWEST_HZ to Nyquist."""
  from scipy.signal import stft
  frequencies, _, spectrum = stft(audio.mean(axis=1), fs=sample_rate, nperseg=FFT_SIZE,
                                  noverlap=FFT_SIZE - HOP)
  magnitude_db = 20.0 * np.log10(np.abs(spectrum) + 1e-10)
  rows = np.geomspace(LOWEST_HZ, sample_rate / 2, FREQUENCY_ROWS)
  nearest = np.clip(np.searchsorted(frequencies, rows), 0, len(frequencies) - 1)
  return magnitude_db[nearest]


def middle_excerpt(frames: int, sample_rate: int,
                   seconds: float = SPECTROGRAM_SECONDS) -> slice:
  """The samples of the ``seconds`` in the middle of a track of ``frames``."""
  length = min(frames, int(seconds * sample_rate))
  start = (frames - length) // 2
  return slice(start, start + length)


def plot_spectrograms(name: str, mixture: np.ndarray, references: np.ndarray,
                      estimates: np.ndarray, sample_rate: int, path: str,
                      start_seconds: float = 0.0) -> str:
  """The mixture, then each source's reference beside its estimate.

  Args:
    name: the track's name (in the title).
    mixture: (time, channels), the excerpt to draw (``middle_excerpt``).
    references: (sources, time, channels), SOURCES order, the same excerpt.
    estimates: (sources, time, channels), SOURCES order, the same excerpt.
    sample_rate: in Hz.
    path: the PNG to write.
    start_seconds: where the excerpt starts in the track (for the time axis).
  """
  panels = [("mixture", mixture)]
  for index, source in enumerate(SOURCES):
    panels += [(f"{source}: reference", references[index]),
               (f"{source}: estimate", estimates[index])]
  spectra = [_log_spectrogram_db(audio, sample_rate) for _, audio in panels]
  top = max(float(s.max()) for s in spectra)
  figure = _figure(12, 2.0 * (1 + len(SOURCES)))
  grid = figure.add_gridspec(1 + len(SOURCES), 2)
  cells = [grid[0, :]] + [grid[1 + i // 2, i % 2] for i in range(2 * len(SOURCES))]
  extent = (start_seconds, start_seconds + len(mixture) / sample_rate, 0.0, 1.0)
  ticks_hz = [f for f in (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
              if LOWEST_HZ <= f <= sample_rate / 2]
  tick_rows = np.log(np.array(ticks_hz) / LOWEST_HZ) / np.log(sample_rate / 2 / LOWEST_HZ)
  for cell, (label, _), spectrum in zip(cells, panels, spectra):
    ax = figure.add_subplot(cell)
    image = ax.imshow(spectrum, origin="lower", aspect="auto", extent=extent, cmap="magma",
                      vmin=top - DYNAMIC_RANGE_DB, vmax=top, interpolation="nearest")
    ax.set_yticks(tick_rows, [f"{f / 1000:g}k" if f >= 1000 else str(f) for f in ticks_hz])
    ax.set_title(label, fontsize=10)
    ax.set_ylabel("Hz")
  ax.set_xlabel("time (s)")
  figure.colorbar(image, ax=figure.axes, label="dB", shrink=0.6)
  figure.suptitle(f"{name}: spectrograms of the mixture, the references and the estimates")
  return _save(figure, path, f"the spectrograms of '{name}'")
