"""A stem's waveform and spectrogram as PNG images, drawn in flat memory.

The image is ``WIDTH_PIXELS`` columns wide whatever the song's length, so the
stem is read one column's stretch at a time: each column keeps the min and
max sample (the waveform) and the mean power spectrum of a few FFT frames
spread across its stretch (the spectrogram).  Memory is one column's samples
plus the fixed-size image, for a 3-second song as for a 1-hour one, and a
long file is read once.
"""

from __future__ import annotations

import numpy as np
import soundfile as sf

from attnsep_jax import files

WIDTH_PIXELS = 960
WAVEFORM_HEIGHT_PIXELS = 64
SPECTROGRAM_HEIGHT_PIXELS = 112
FFT_SAMPLES = 2048
FFTS_PER_COLUMN = 4
LOWEST_HZ = 30.0
DB_RANGE = (-100.0, -20.0)   # dB relative to a full-scale sine
QUIET_PEAK = 0.05            # waveforms are scaled to their peak, or to this when quieter
COLORS = {"drums": "#e4572e", "bass": "#3a86ff", "other": "#2a9d8f", "vocals": "#9b5de5"}
DEFAULT_COLOR = "#5c677d"


def column_summary(path: str, columns: int = WIDTH_PIXELS, fft_samples: int = FFT_SAMPLES,
                   ffts_per_column: int = FFTS_PER_COLUMN):
  """Per-column (low, high, power) of an audio file, one stretch in memory at a time.

  Args:
    path: the audio file.
    columns: image width (fewer when the file has fewer samples).
    fft_samples: FFT length of the spectrogram frames.
    ffts_per_column: FFT frames averaged in each column.
  Returns:
    low, high: (columns,) min and max sample over the channels; power:
    (columns, fft_samples // 2 + 1) mean power spectrum of the channel mean.
  """
  window = np.hanning(fft_samples).astype(np.float32)
  scale = 4.0 / window.sum() ** 2   # a full-scale sine peaks at 1 (0 dB)
  with sf.SoundFile(path) as f:
    total = f.frames
    columns = max(1, min(columns, total))
    edges = np.linspace(0, total, columns + 1).astype(np.int64)
    low, high = np.zeros(columns, np.float32), np.zeros(columns, np.float32)
    power = np.zeros((columns, fft_samples // 2 + 1), np.float32)
    for c in range(columns):
      start = int(max(0, min(edges[c], total - fft_samples)))
      stop = int(min(total, max(edges[c + 1], start + fft_samples)))
      f.seek(start)
      stretch = f.read(stop - start, dtype="float32", always_2d=True)
      own = stretch[edges[c] - start:edges[c + 1] - start]
      low[c], high[c] = own.min(), own.max()
      mono = np.pad(stretch.mean(axis=1), (0, max(0, fft_samples - len(stretch))))
      starts = np.linspace(0, len(mono) - fft_samples, ffts_per_column).astype(np.int64)
      frames = np.stack([mono[s:s + fft_samples] for s in starts]) * window
      power[c] = scale * np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)
  return low, high, power


def _figure(height_pixels: int):
  from matplotlib.figure import Figure   # no pyplot: safe outside the main thread
  dpi = 100
  figure = Figure(figsize=(WIDTH_PIXELS / dpi, height_pixels / dpi), dpi=dpi)
  axes = figure.add_axes((0, 0, 1, 1))
  axes.set_axis_off()
  return figure, axes


def _save(figure, path: str, what: str) -> None:
  with files.staged_file(path, what, suffix=".png") as tmp:
    figure.savefig(tmp, format="png", transparent=True)


def draw_waveform(low, high, color: str, path: str) -> None:
  """Writes the min/max envelope of ``column_summary`` as a PNG."""
  figure, axes = _figure(WAVEFORM_HEIGHT_PIXELS)
  x = np.arange(len(low) + 1)
  axes.fill_between(x, np.append(low, low[-1]), np.append(high, high[-1]), step="post",
                    color=color, linewidth=0)
  axes.axhline(0.0, color=color, linewidth=0.5)
  axes.set_xlim(0, len(low))
  # Scaled to the stem's peak so that quiet stems show their shape, but by
  # at most QUIET_PEAK's gain so that near-silence stays flat.
  peak = max(float(high.max()), -float(low.min()), QUIET_PEAK)
  axes.set_ylim(-peak, peak)
  _save(figure, path, "a waveform image")


def log_bands(power, sample_rate: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
  """Mean power in ``rows`` log-spaced bands from LOWEST_HZ to Nyquist.

  Returns:
    (columns, rows) band powers, and the rows' edges in Hz (rows + 1,).
  """
  bins = power.shape[1]
  edges_hz = np.geomspace(LOWEST_HZ, sample_rate / 2, rows + 1)
  edges = np.round(edges_hz / (sample_rate / 2) * (bins - 1)).astype(np.int64)
  high = np.maximum(edges[1:], edges[:-1] + 1)   # each band holds at least one bin
  total = np.concatenate([np.zeros((power.shape[0], 1)), np.cumsum(power, axis=1)], axis=1)
  return (total[:, high] - total[:, edges[:-1]]) / (high - edges[:-1]), edges_hz


def draw_spectrogram(power, sample_rate: int, path: str) -> None:
  """Writes the column spectra of ``column_summary`` as a log-frequency PNG."""
  figure, axes = _figure(SPECTROGRAM_HEIGHT_PIXELS)
  bands, edges_hz = log_bands(power, sample_rate, SPECTROGRAM_HEIGHT_PIXELS)
  db = 10.0 * np.log10(np.maximum(bands, 1e-12))
  axes.imshow(db.T, origin="lower", aspect="auto", interpolation="nearest", cmap="magma",
              vmin=DB_RANGE[0], vmax=DB_RANGE[1], extent=(0, len(db), 0, len(edges_hz) - 1))
  for label_hz, label in ((100, "100 Hz"), (1000, "1 kHz"), (10000, "10 kHz")):
    if label_hz < sample_rate / 2:
      row = np.interp(np.log(label_hz), np.log(edges_hz), np.arange(len(edges_hz)))
      axes.text(4, row, label, color="white", fontsize=7, va="center", alpha=0.8)
  _save(figure, path, "a spectrogram image")


def draw_stem(stem_path: str, name: str, waveform_path: str, spectrogram_path: str) -> None:
  """Writes the waveform and spectrogram PNGs of one stem file."""
  low, high, power = column_summary(stem_path)
  draw_waveform(low, high, COLORS.get(name, DEFAULT_COLOR), waveform_path)
  draw_spectrogram(power, sf.info(stem_path).samplerate, spectrogram_path)
