"""Rendering: each stem of a ``Song`` through its own SoundFont synth.

Each stem is rendered by a fresh ``tinysoundfont`` synth, so nothing of one
stem leaks into another; ``render_song`` then sets realistic relative levels
and scales the song so that neither the mixture nor any stem clips, and
``quantize`` gives the samples as written, the mixture their exact sum.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from attnsep_jax import SAMPLE_RATE, SOURCES
from attnsep_jax.corpus.compose import Part, Song
from attnsep_jax.data.augment import rms_db

FLUID_R3 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SOUNDFONT_LICENCES = {"TimGM6mb.sf2": "GPL-2.0 (Tim Brechbill, shipped with pretty_midi)",
                      "FluidR3_GM.sf2": "MIT (Frank Wen, Debian fluid-soundfont-gm)",
                      "MuseScore_General_Lite.sf3":
                          "MIT (S. Christian Collins, Debian musescore-general-soundfont-small)",
                      "OPL-3_FM_128M.sf2": "CC-BY-SA-4.0 (Zandro Reveille, Debian opl3-soundfont)",
                      "sf_GMbank.sf2": "public domain (csound, Debian csound-soundfont)"}
TINYSOUNDFONT = "tinysoundfont==0.3.7"


class MissingRendererError(ImportError):
  """tinysoundfont, the SoundFont synth, is not installed."""


def require_renderer() -> None:
  """Raises ``MissingRendererError`` saying what to install when tinysoundfont is absent.

  tinysoundfont is only an optional dependency (the ``corpus`` extra): it
  declares pyaudio, which only its live playback uses and which builds only
  where PortAudio's headers and a C compiler are installed (docs/data.md).
  """
  if importlib.util.find_spec("tinysoundfont") is None:
    raise MissingRendererError(
        "the corpus is rendered with tinysoundfont, which is not installed; install it with "
        f"`pip install --no-deps {TINYSOUNDFONT}` (--no-deps skips pyaudio, "
        "which only live playback needs)")


def default_soundfont() -> str:
  """pretty_midi's bundled TimGM6mb: the same file on every machine, so the
  same arguments give the same corpus everywhere (pass FLUID_R3 or any other
  soundfont explicitly, e.g. for a test set of instruments training never heard)."""
  spec = importlib.util.find_spec("pretty_midi")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("no soundfont: install pretty_midi or fluid-soundfont-gm, "
                            "or pass --soundfont")
  return os.path.join(list(spec.submodule_search_locations)[0], "TimGM6mb.sf2")


def render_stem(parts: list[Part], soundfont: bytes, num_samples: int,
                sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, list[str]]:
  """Renders ``parts`` with a fresh synth: ``(num_samples, 2)`` float32 and preset names."""
  import tinysoundfont
  synth = tinysoundfont.Synth(samplerate=sample_rate)
  sfid = synth.sfload(soundfont)
  events, names = [], []
  for chan, part in enumerate(parts):
    chan = 9 if part.drums else (chan if chan < 9 else chan + 1)
    bank, preset = part.bank, part.preset
    try:
      synth.program_select(chan, sfid, bank, preset, part.drums)
    except Exception:
      bank, preset = (128, 0) if part.drums else (0, 0)   # a soundfont without that preset
      synth.program_select(chan, sfid, bank, preset, part.drums)
    names.append(synth.sfpreset_name(sfid, bank, preset) or f"{bank}:{preset}")
    synth.control_change(chan, 7, int(part.volume))
    synth.control_change(chan, 10, int(part.pan))
    synth.pitchbend_range(chan, 2.0)
    # Sort key (sample, order): bends before note-offs before note-ons, so a
    # repeated key is released and struck again, with its pitch already set.
    for t, value in part.bends:
      events.append((int(round(t * sample_rate)), 0, chan, "bend", value, 0))
    for start, end, key, velocity in part.notes:
      events.append((int(round(start * sample_rate)), 2, chan, "on", key, velocity))
      events.append((int(round(end * sample_rate)), 1, chan, "off", key, 0))
  events.sort(key=lambda e: (e[0], e[1], e[2], e[4]))
  out = np.zeros((num_samples, 2), np.float32)
  pos = 0
  for sample, _, chan, kind, a, b in events:
    if sample >= num_samples:
      break
    if sample > pos:
      out[pos:sample] = np.frombuffer(synth.generate(sample - pos), np.float32).reshape(-1, 2)
      pos = sample
    if kind == "on":
      synth.noteon(chan, a, b)
    elif kind == "off":
      synth.noteoff(chan, a)
    else:
      synth.pitchbend(chan, a)
  if pos < num_samples:
    out[pos:] = np.frombuffer(synth.generate(num_samples - pos), np.float32).reshape(-1, 2)
  return out, names


def render_song(song: Song, soundfont: bytes | dict[str, bytes], sample_rate: int = SAMPLE_RATE):
  """Stems ``(4, time, 2)`` float32 at realistic relative levels, never clipping.

  ``soundfont``: one soundfont file's bytes, or one per source.
  """
  rng = song.rng
  num_samples = int(round(song.seconds * sample_rate))
  stems, instruments = [], {}
  for source in SOURCES:
    font = soundfont[source] if isinstance(soundfont, dict) else soundfont
    audio, names = render_stem(song.parts[source], font, num_samples, sample_rate)
    stems.append(audio)
    instruments[source] = names
  stems = np.stack(stems)                                         # (4, T, 2)
  # Levels relative to the drums, in dB of RMS, spread as mixes differ.
  offsets = {"drums": rng.normal(0, 2), "bass": rng.normal(-2, 2.5),
             "other": rng.normal(-1.5, 3), "vocals": rng.normal(1, 2.5)}
  for i, source in enumerate(SOURCES):
    level = float(rms_db(stems[i]))
    if level > -100:
      stems[i] *= np.float32(10 ** ((offsets[source] - level + -20) / 20))
  fade = min(int(0.02 * sample_rate), num_samples // 2)   # no click at the cut
  if fade:
    stems[:, -fade:] *= np.linspace(1, 0, fade, dtype=np.float32)[:, None]
  peak = max(float(np.max(np.abs(stems.sum(axis=0)))), float(np.max(np.abs(stems))), 1e-9)
  target = float(rng.uniform(0.5, 0.9))
  stems *= np.float32(target / peak)
  return stems, instruments


def quantize(stems: np.ndarray, subtype: str) -> tuple[np.ndarray, np.ndarray]:
  """Stems and mixture as they will be written, with mixture == sum(stems) exactly."""
  if subtype == "PCM_16":
    # Integers sum exactly, and int16 / 32768 is exact in float32: the
    # mixture read back equals the sum of the stems read back, bit for bit.
    q = np.clip(np.round(stems * 32768.0), -32768, 32767).astype(np.int16)
    mixture = q.astype(np.int32).sum(axis=0)
    assert np.abs(mixture).max() <= 32767, "mixture would clip"
    return q, mixture.astype(np.int16)
  stems = stems.astype(np.float32)
  return stems, stems.sum(axis=0)    # the reader sums in the same order

