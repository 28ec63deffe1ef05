"""The built-in corpus: songs composed from a seed, rendered per stem from a SoundFont.

    python -m attnsep_jax.data.synth --out data/synth --tracks 12 --test-tracks 4 --seconds 20

Each song draws a style (rock, pop, funk, ballad, electronic, shuffle), a
tempo, a key and chord progressions, then composes a drum part, a bassline,
accompaniment ("other": pads, piano, guitars, organ, brass, synths, sometimes
a counter-melody in the lead's register) and a lead melody with backing
harmonies ("vocals": choir/voice/synth-voice presets, or sax, flute, trumpet
and lead synths, with vibrato and scoops through pitch bend).  Each stem is
rendered by a fresh tinysoundfont synth, so nothing of one stem leaks into
another, and the mixture is the exact sum of the stems as written.

The output is MUSDB18-HQ's layout (``train/`` and ``test/`` track folders
with mixture/drums/bass/other/vocals.wav), a musdb setup file ``mus.yaml``
naming the validation tracks, and ``corpus.json`` with the seed, the
soundfont and, per track, its style, tempo, key, instruments and levels.
The same arguments give identical files.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from attnsep_jax import SAMPLE_RATE, SOURCES

FORMAT = "attnsep-synth-1"
FLUID_R3 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SOUNDFONT_LICENCES = {"TimGM6mb.sf2": "GPL-2.0 (Tim Brechbill, shipped with pretty_midi)",
                      "FluidR3_GM.sf2": "MIT (Frank Wen, Debian fluid-soundfont-gm)"}

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Progressions as 0-based scale degrees, one chord per bar.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 3), (5, 3, 0, 4), (0, 5, 3, 4), (1, 4, 0, 0),
              (0, 3, 0, 4), (3, 0, 4, 5)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4),
              (0, 2, 6, 3)),
}

# GM drum keys.
KICK, SNARE, SIDESTICK, CLAP, HAT, PEDAL_HAT, OPEN_HAT = 36, 38, 37, 39, 42, 44, 46
CRASH, RIDE, TAMBOURINE, COWBELL, SHAKER = 49, 51, 54, 56, 70
TOMS = (50, 48, 47, 45, 43, 41)

# 16-step drum patterns per style: x = hit, g = ghost note, o = accent.
DRUMS = {
    "rock": [{KICK: "x.......x.x.....", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
             {KICK: "x......x..x.....", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
             {KICK: "x.x.....x.x.....", SNARE: "....x.......x...", RIDE: "x.x.x.x.x.x.x.x."}],
    "pop": [{KICK: "x.....x...x.....", SNARE: "....x.......x...", HAT: "xgxgxgxgxgxgxgxg"},
            {KICK: "x.......x.....x.", CLAP: "....x.......x...", HAT: "..x...x...x...x.",
             SHAKER: "xxxxxxxxxxxxxxxx"},
            {KICK: "x..x....x.......", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x.",
             TAMBOURINE: "....x.......x..."}],
    "funk": [{KICK: "x..x......x..x..", SNARE: "....x..g.g..x..g", HAT: "xgxgxgxgxgxgxgxg"},
             {KICK: "x.x....x..x.....", SNARE: "....x.g.....x.g.", HAT: "xxxxxxxxxxxxxxox",
              COWBELL: "x.......x......."},
             {KICK: "x......x.x....x.", SNARE: "..g.x..g.g..x...", HAT: "x.x.x.x.x.x.x.o."}],
    "ballad": [{KICK: "x.......x.......", SIDESTICK: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
               {KICK: "x..........x....", SNARE: "........x.......", HAT: "x...x...x...x..."},
               {KICK: "x.......x.x.....", SNARE: "....x.......x...", RIDE: "x...x...x...x..."}],
    "electronic": [{KICK: "x...x...x...x...", CLAP: "....x.......x...", OPEN_HAT: "..x...x...x...x.",
                    HAT: "xxxxxxxxxxxxxxxx"},
                   {KICK: "x...x...x...x..x", SNARE: "....x.......x...", HAT: "..x...x...x...x."},
                   {KICK: "x..x..x...x.....", CLAP: "....x.......x...", HAT: "x.xxx.xxx.xxx.xx"}],
    "shuffle": [{KICK: "x.......x.x.....", SNARE: "....x.......x...", RIDE: "x.xxx.xxx.xxx.xx"},
                {KICK: "x.....x.x.......", SNARE: "....x..g....x..g", HAT: "x.x.x.x.x.x.x.x.",
                 PEDAL_HAT: "....x.......x..."}],
}

# Per style: tempo range (bpm), swing of the off-beat 8ths (fraction of a
# 16th), drum kits (bank-128 presets), bass programs and figures,
# accompaniment (program, role) choices, lead programs, modes.
STYLES = {
    "rock": dict(tempo=(100, 160), swing=0.0, kits=(0, 16, 8), modes=("major", "minor"),
                 bass=(34, 33, 35), bass_figures=("eighths", "follow_kick"),
                 other=((30, "power"), (29, "power"), (27, "strum"), (16, "pad"), (0, "block"),
                        (48, "pad"), (61, "stabs")),
                 lead=(85, 53, 54, 52, 65, 81)),
    "pop": dict(tempo=(90, 130), swing=0.0, kits=(0, 8, 24), modes=("major", "major", "minor"),
                bass=(33, 38, 34, 35), bass_figures=("root_fifth", "follow_kick", "eighths"),
                other=((0, "arp"), (1, "block"), (4, "block"), (27, "strum"), (25, "strum"),
                       (48, "pad"), (89, "pad"), (50, "pad"), (11, "arp")),
                lead=(85, 53, 54, 52, 73, 85)),
    "funk": dict(tempo=(92, 122), swing=0.12, kits=(0, 8), modes=("minor", "major"),
                 bass=(36, 37, 33, 38), bass_figures=("sync16",),
                 other=((28, "skank"), (7, "skank"), (61, "stabs"), (4, "block"), (62, "stabs"),
                        (17, "pad")),
                 lead=(66, 65, 85, 53, 56)),
    "ballad": dict(tempo=(66, 92), swing=0.0, kits=(0, 40, 32), modes=("major", "minor"),
                   bass=(32, 33, 35), bass_figures=("whole", "root_fifth"),
                   other=((0, "arp"), (24, "arp"), (48, "pad"), (49, "pad"), (89, "pad"),
                          (46, "arp"), (0, "block")),
                   lead=(52, 53, 85, 73, 71, 54)),
    "electronic": dict(tempo=(118, 150), swing=0.0, kits=(24, 25), modes=("minor", "minor", "major"),
                       bass=(38, 39, 87, 81), bass_figures=("offbeat", "follow_kick", "eighths"),
                       other=((81, "arp"), (80, "arp"), (89, "pad"), (90, "pad"), (95, "pad"),
                              (50, "pad"), (62, "stabs"), (98, "arp")),
                       lead=(54, 85, 80, 81, 91, 53)),
    "shuffle": dict(tempo=(80, 130), swing=0.55, kits=(32, 40, 0), modes=("major", "minor"),
                    bass=(32, 33), bass_figures=("walking",),
                    other=((16, "pad"), (17, "comp"), (0, "comp"), (26, "comp"), (4, "comp"),
                           (61, "stabs")),
                    lead=(65, 66, 56, 85, 53, 64)),
}
# Counter-melody instruments for "other" (the lead's register, not its stem).
COUNTER = (73, 71, 56, 65, 40, 81, 80, 22, 68, 11)
VOICE_BACKING = (52, 53, 54, 91)


@dataclasses.dataclass
class Part:
  """One instrument line of a stem: MIDI notes plus optional pitch-bend curve."""
  name: str
  preset: int
  bank: int = 0
  drums: bool = False
  pan: int = 64                 # CC10, 0 = left, 127 = right
  volume: int = 100             # CC7
  notes: list = dataclasses.field(default_factory=list)   # (start_s, end_s, key, velocity)
  bends: list = dataclasses.field(default_factory=list)   # (time_s, value 0..16383)


# ----------------------------------------------------------------- composition
class Song:
  """The musical plan of one track; ``parts[stem]`` lists its Parts."""

  def __init__(self, rng: np.random.Generator, seconds: float):
    self.rng = rng
    self.style = str(rng.choice(sorted(STYLES)))
    self.spec = STYLES[self.style]
    self.tempo_bpm = int(rng.integers(*self.spec["tempo"]))
    self.mode = str(rng.choice(self.spec["modes"]))
    self.tonic = int(rng.integers(12))
    self.scale = SCALES[self.mode]
    self.beat_s = 60.0 / self.tempo_bpm
    self.bar_s = 4 * self.beat_s
    self.seconds = seconds
    self.num_bars = int(math.ceil(seconds / self.bar_s)) + 1
    progs = PROGRESSIONS[self.mode]
    picks = rng.choice(len(progs), size=2, replace=len(progs) < 2)
    self.progressions = {"verse": progs[picks[0]], "chorus": progs[picks[1]]}
    self.sections = self._arrange()
    self.parts: dict[str, list[Part]] = {s: [] for s in SOURCES}

  @property
  def key_name(self) -> str:
    return f"{NOTE_NAMES[self.tonic]} {self.mode}"

  def _arrange(self) -> list[dict]:
    """Sections of 4 bars (2 for short songs) with which stems play in each."""
    rng = self.rng
    length = 4 if self.num_bars >= 8 else 2
    count = int(math.ceil(self.num_bars / length))
    if count >= 3:
      kinds = ["intro"] + [("verse", "chorus", "verse", "chorus", "bridge", "chorus")[i % 6]
                           for i in range(count - 1)]
    else:
      kinds = ["verse", "chorus"][:count]
    sections = []
    for i, kind in enumerate(kinds):
      sections.append(dict(
          kind=kind, first_bar=i * length, bars=length,
          drums=rng.random() < {"intro": 0.5, "bridge": 0.6}.get(kind, 0.97),
          vocals=rng.random() < {"intro": 0.1, "verse": 0.9, "bridge": 0.5}.get(kind, 1.0),
          backing=kind == "chorus" and rng.random() < 0.6,
          counter=rng.random() < (0.7 if kind in ("intro", "bridge") else 0.2),
          bass=rng.random() < (0.6 if kind == "intro" else 0.97)))
    # Every stem must sound somewhere, or the track teaches nothing about it.
    for stem in ("drums", "vocals", "bass"):
      if not any(s[stem] for s in sections):
        sections[min(1, len(sections) - 1)][stem] = True
    return sections

  # -- harmony
  def chord(self, bar: int) -> tuple[int, ...]:
    """Pitch classes (root first, plus a 7th in funk/shuffle) of the chord at ``bar``."""
    section = self.section_at(bar)
    prog = self.progressions["chorus" if section["kind"] == "chorus" else "verse"]
    degree = prog[(bar - section["first_bar"]) % len(prog)]
    count = 4 if self.style in ("funk", "shuffle") else 3
    return tuple((self.tonic + self.scale[(degree + 2 * k) % 7]) % 12 for k in range(count))

  def section_at(self, bar: int) -> dict:
    for s in self.sections:
      if s["first_bar"] <= bar < s["first_bar"] + s["bars"]:
        return s
    return self.sections[-1]

  def step_time(self, bar: int, step: float) -> float:
    """Seconds at 16th ``step`` of ``bar``, with swing on the off-beat 8ths."""
    swing = self.spec["swing"]
    offset = swing * (self.beat_s / 4) if int(step) % 4 == 2 and step == int(step) else 0.0
    return bar * self.bar_s + step * self.beat_s / 4 + offset

  def jitter(self, sigma_s: float) -> float:
    return float(np.clip(self.rng.normal(0.0, sigma_s), -2 * sigma_s, 2 * sigma_s))

  def scale_pitches(self, low: int, high: int) -> list[int]:
    return [p for p in range(low, high + 1) if (p - self.tonic) % 12 in self.scale]


def _velocity(rng, base: int, spread: int = 8) -> int:
  return int(np.clip(base + rng.integers(-spread, spread + 1), 1, 127))


def _place(pitch_class: int, low: int) -> int:
  """The lowest pitch >= ``low`` with ``pitch_class``."""
  return low + (pitch_class - low) % 12


def compose_drums(song: Song) -> None:
  rng, spec = song.rng, song.spec
  kit = int(rng.choice(spec["kits"]))
  patterns = DRUMS[song.style]
  main, alt = rng.choice(len(patterns), size=2)
  part = Part("drums", preset=kit, bank=128, drums=True, volume=_velocity(rng, 105, 10))
  tight = song.style == "electronic"
  for section in song.sections:
    if not section["drums"]:
      continue
    for b in range(section["bars"]):
      bar = section["first_bar"] + b
      pattern = patterns[main if section["kind"] != "chorus" else alt]
      fill = b == section["bars"] - 1 and rng.random() < 0.5
      for key, steps in pattern.items():
        for step, char in enumerate(steps):
          if char == "." or (fill and step >= 12):
            continue
          vel = {"x": 100, "g": 45, "o": 118}[char]
          if key in (HAT, SHAKER, RIDE) and step % 4:
            vel -= 15   # off-beat hats softer: a groove, not a metronome
          t = song.step_time(bar, step) + (0.0 if tight else song.jitter(0.004))
          part.notes.append((max(t, 0.0), t + 0.1, key, _velocity(rng, vel)))
      if b == 0 and (section["kind"] in ("chorus", "bridge") or rng.random() < 0.3):
        t = song.step_time(bar, 0)
        part.notes.append((t, t + 0.5, CRASH, _velocity(rng, 105)))
      if fill:
        toms = [TOMS[i * len(TOMS) // 4] for i in range(4)] if rng.random() < 0.6 else [SNARE] * 4
        for i, step in enumerate(range(12, 16)):
          t = song.step_time(bar, step) + song.jitter(0.004)
          part.notes.append((max(t, 0.0), t + 0.1, toms[i], _velocity(rng, 90 + 5 * i)))
  song.parts["drums"].append(part)
  song.drum_kit = kit
  song.kick_steps = [i for i, c in enumerate(patterns[main].get(KICK, "x.......x.......")) if c != "."]


def compose_bass(song: Song) -> None:
  rng, spec = song.rng, song.spec
  program = int(rng.choice(spec["bass"]))
  figure = str(rng.choice(spec["bass_figures"]))
  low = int(rng.integers(28, 36))       # E1..B1: right where the kick lives
  part = Part("bass", preset=program, volume=_velocity(rng, 105, 10))
  step_s = song.beat_s / 4
  for section in song.sections:
    if not section["bass"]:
      continue
    for b in range(section["bars"]):
      bar = section["first_bar"] + b
      chord = song.chord(bar)
      root = _place(chord[0], low)
      fifth = root + 7
      nxt = _place(song.chord(bar + 1)[0], low)
      if figure == "eighths":
        hits = [(s, 1.8, root) for s in range(0, 16, 2)]
      elif figure == "follow_kick":
        hits = [(s, 1.8, root if s < 12 or rng.random() < 0.7 else fifth) for s in song.kick_steps]
      elif figure == "root_fifth":
        hits = [(0, 3.6, root), (6, 1.8, root), (8, 3.6, fifth), (14, 1.8, root + 12)]
      elif figure == "whole":
        hits = [(0, 11.5, root), (12, 3.8, fifth if rng.random() < 0.5 else root)]
      elif figure == "offbeat":
        hits = [(s, 1.5, root) for s in (2, 6, 10, 14)] + [(0, 1.0, root - 12 if root >= 40 else root)]
      elif figure == "sync16":
        notes = (root, root + 12, root, fifth, root + 10, root)
        hits = [(s, 0.8, notes[i % len(notes)])
                for i, s in enumerate(s for s, c in enumerate("x..x..x.x.x..x.x") if c == "x")]
      else:  # walking: quarter notes, chromatic approach to the next root
        third = _place(chord[1], root)
        hits = [(0, 3.6, root), (4, 3.6, third), (8, 3.6, fifth),
                (12, 3.6, nxt - 1 if rng.random() < 0.5 else nxt + 1)]
      for step, dur_steps, key in hits:
        t = song.step_time(bar, step) + song.jitter(0.006)
        vel = _velocity(rng, 100 if step % 4 == 0 else 85)
        part.notes.append((max(t, 0.0), t + dur_steps * step_s, int(key), vel))
  song.parts["bass"].append(part)
  song.bass_figure = figure


def _voicing(chord, low: int, size: int) -> list[int]:
  """Close voicing of ``chord`` starting at the first chord tone >= ``low``."""
  notes, pitch = [], low
  tones = list(chord)
  start = min(range(len(tones)), key=lambda i: (_place(tones[i], low) - low))
  for i in range(size):
    pc = tones[(start + i) % len(tones)]
    pitch = _place(pc, pitch + (1 if notes else 0))
    notes.append(pitch)
  return notes


def compose_other(song: Song, lead_center: int) -> None:
  rng, spec = song.rng, song.spec
  choices = spec["other"]
  count = int(rng.integers(1, 4))
  picks = rng.choice(len(choices), size=min(count, len(choices)), replace=False)
  step_s = song.beat_s / 4
  for n, pick in enumerate(picks):
    program, role = choices[pick]
    # Sometimes voice the chords right in the lead's register, so that
    # "other" and "vocals" cannot be told apart by frequency.
    high = rng.random() < 0.35
    low = int(lead_center - 5 if high else rng.integers(48, 58))
    part = Part(f"other-{role}", preset=int(program), pan=int(np.clip(64 + rng.normal(0, 30), 10, 118)),
                volume=_velocity(rng, 95, 12))
    size = 2 if role == "power" else int(rng.integers(3, 5))
    for section in song.sections:
      if n > 0 and section["kind"] == "intro" and rng.random() < 0.5:
        continue   # arrangements build up
      for b in range(section["bars"]):
        bar = section["first_bar"] + b
        chord = song.chord(bar)
        voicing = _voicing(chord, low - 12 if role == "power" else low, size)
        if role == "power":
          voicing = [voicing[0], voicing[0] + 7, voicing[0] + 12]
        if role == "pad":
          hits = [(0, 15.8)]
        elif role == "block":
          hits = [(0, 7.5), (8, 7.5)] if rng.random() < 0.7 else [(0, 5.5), (6, 1.8), (8, 7.5)]
        elif role in ("strum", "power"):
          grid = "x.x.x.x.x.x.x.x." if role == "power" else str(rng.choice(
              ["x.x.x.x.x.x.x.x.", "x..x..x...x.x...", "x...x.xx.xx.x.x."]))
          hits = [(s, 1.6 if role == "power" else 1.9) for s, c in enumerate(grid) if c == "x"]
        elif role == "arp":
          rate = 2 if song.tempo_bpm > 110 or rng.random() < 0.5 else 1
          hits = [(s, rate * 1.5) for s in range(0, 16, rate)]
        elif role == "skank":
          hits = [(s, 0.7) for s, c in enumerate("..x...x.xx..x.x.") if c == "x"]
        elif role == "stabs":
          hits = [(s, 1.0) for s, c in enumerate(str(rng.choice(
              ["....x..x......x.", "x.....x...x.....", "...x...x..x....."]))) if c == "x"]
        else:  # comp: a few syncopated chords per bar
          steps = np.sort(rng.choice(np.arange(0, 16, 2), size=int(rng.integers(2, 5)), replace=False))
          hits = [(int(s) + (1 if rng.random() < 0.2 else 0), 2.5) for s in steps]
        for i, (step, dur_steps) in enumerate(hits):
          t0 = song.step_time(bar, step) + song.jitter(0.006)
          vel = _velocity(rng, 80 if role in ("pad", "arp") else 92)
          if role == "arp":
            order = voicing + voicing[-2:0:-1]
            keys = [order[i % len(order)]]
          else:
            keys = voicing
          for j, key in enumerate(keys):
            strum = 0.012 * j if role in ("strum", "power") else 0.0
            t = max(t0 + strum, 0.0)
            part.notes.append((t, t0 + dur_steps * step_s, int(key), vel))
    song.parts["other"].append(part)
  # A counter-melody: an instrument that sings in the lead's register.
  if any(s["counter"] for s in song.sections):
    program = int(rng.choice(COUNTER))
    part = Part("other-counter", preset=program, pan=int(np.clip(64 + rng.normal(0, 25), 20, 108)),
                volume=_velocity(rng, 92, 10))
    sections = [s for s in song.sections if s["counter"]]
    _melody(song, part, sections, center=lead_center + int(rng.integers(-4, 5)),
            sparse=True, vibrato_cents=(10, 25))
    song.parts["other"].append(part)


def _phrase_rhythm(rng, style: str) -> list[tuple[float, float]]:
  """(onset, duration) in beats of a 2-bar phrase, ending with a held note."""
  durations = np.array([0.25, 0.5, 1.0, 1.5, 2.0])
  weights = np.array([0.05 if style == "ballad" else 0.15, 0.4, 0.3, 0.1, 0.05])
  t = float(rng.choice([0.0, 0.5, 1.0]))
  out = []
  while t < 6.0:
    d = float(rng.choice(durations, p=weights / weights.sum()))
    out.append((t, d))
    t += d + (0.5 if rng.random() < 0.12 else 0.0)
  last_onset, _ = out[-1]
  out[-1] = (last_onset, max(7.5 - last_onset, 1.0))
  return out


def _melody(song: Song, part: Part, sections: list[dict], center: int, sparse: bool = False,
            vibrato_cents=(20, 60)) -> None:
  """A singable line: motifs per section kind, chord tones on strong beats."""
  rng = song.rng
  pitches = song.scale_pitches(center - 9, center + 9)
  motifs: dict[str, list] = {}
  depth = float(rng.uniform(*vibrato_cents))
  rate_hz = float(rng.uniform(4.5, 6.5))
  idx = len(pitches) // 2
  for section in sections:
    kind = section["kind"]
    if kind not in motifs:
      motifs[kind] = _phrase_rhythm(rng, song.style)
    for phrase_bar in range(section["first_bar"], section["first_bar"] + section["bars"], 2):
      rhythm = motifs[kind]
      if sparse:
        rhythm = [(o, d * 2) for o, d in rhythm[::2]]
      elif rng.random() < 0.3:          # a varied repeat, as verses are sung
        rhythm = [r for r in rhythm if rng.random() > 0.15] or rhythm
      velocity_base = int(rng.integers(80, 105))
      for i, (onset, dur) in enumerate(rhythm):
        bar = phrase_bar + int(onset // 4)
        beat = onset % 4
        if bar >= song.num_bars:
          break
        move = int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3, 4, -4],
                              p=[.1, .2, .15, .06, .2, .15, .05, .03, .03, .015, .015]))
        idx = int(np.clip(idx + move - int(np.sign(idx - len(pitches) // 2) * (rng.random() < 0.2)),
                          0, len(pitches) - 1))
        if beat == int(beat) and rng.random() < 0.7:   # strong beats land on chord tones
          chord = song.chord(bar)
          tones = [j for j, p in enumerate(pitches) if p % 12 in chord]
          idx = min(tones, key=lambda j: abs(j - idx))
        start = song.step_time(bar, beat * 4) + song.jitter(0.01)
        end = start + dur * song.beat_s * float(rng.uniform(0.85, 0.98))
        part.notes.append((max(start, 0.0), end, pitches[idx],
                           _velocity(rng, velocity_base + (6 if beat == 0 else 0))))
  _expression(song, part, depth, rate_hz)


def _expression(song: Song, part: Part, depth_cents: float, rate_hz: float) -> None:
  """Pitch-bend curve: a scoop into some notes, delayed vibrato on long ones."""
  rng = song.rng
  cents_to_bend = 8191 / 200.0           # pitch-bend range is +-2 semitones
  dt = 0.01
  for start, end, _, _ in part.notes:
    scoop = float(rng.uniform(40, 150)) if rng.random() < 0.3 else 0.0
    t = start
    while t < end:
      age = t - start
      cents = -scoop * max(0.0, 1.0 - age / 0.07)
      delay = 0.18
      if age > delay:
        ramp = min(1.0, (age - delay) / 0.25)
        cents += depth_cents * ramp * math.sin(2 * math.pi * rate_hz * (age - delay))
      part.bends.append((t, int(np.clip(8192 + cents * cents_to_bend, 0, 16383))))
      if scoop and age < 0.07 or age >= delay:
        t += dt
      else:
        t = start + delay + dt   # nothing moves between the scoop and the vibrato
    part.bends.append((end, 8192))


def compose_vocals(song: Song) -> int:
  rng = song.rng
  program = int(rng.choice(song.spec["lead"]))
  center = int(rng.choice([57, 60, 62, 64, 67, 69]))   # male to female tessituras
  lead = Part("lead", preset=program, volume=_velocity(rng, 108, 10))
  _melody(song, lead, [s for s in song.sections if s["vocals"]], center)
  song.parts["vocals"].append(lead)
  backing = [s for s in song.sections if s["backing"]]
  if backing:
    part = Part("backing", preset=int(rng.choice(VOICE_BACKING)), volume=_velocity(rng, 85, 10),
                pan=int(rng.choice([40, 88])))
    for section in backing:
      for bar in range(section["first_bar"], section["first_bar"] + section["bars"]):
        t = song.step_time(bar, 0)
        for key in _voicing(song.chord(bar), center - 3, 3):
          part.notes.append((t, t + song.bar_s * 0.95, key, _velocity(rng, 70)))
    song.parts["vocals"].append(part)
  return center


# Every stem plays in at least this fraction of a track's 1 s windows (and in
# one at least), so that BSS Eval (undefined on a silent reference window) and
# the utterance SDR score every stem of every track.
MIN_PLAYING_FRACTION = 0.2
MAX_COMPOSE_ATTEMPTS = 100


def playing_fraction(song: Song, stem: str) -> float:
  """The fraction of the song's 1 s windows (the last one partial) in which a
  note of ``stem`` sounds."""
  windows = int(math.ceil(song.seconds))
  notes = [(start, end) for part in song.parts[stem] for start, end, *_ in part.notes]
  playing = sum(any(start < min(w + 1, song.seconds) and end > w for start, end in notes)
                for w in range(windows))
  return playing / windows


def compose(seed, seconds: float) -> Song:
  """The song of ``seed`` (an int or a sequence of ints), ``seconds`` long,
  with every stem playing in at least ``MIN_PLAYING_FRACTION`` of its 1 s
  windows: a plan that falls short is drawn again from ``(*seed, attempt)``."""
  base = tuple(np.atleast_1d(seed).tolist())
  for attempt in range(MAX_COMPOSE_ATTEMPTS):
    song = _compose_once(base + (attempt,) if attempt else base, seconds)
    if all(playing_fraction(song, stem) >= MIN_PLAYING_FRACTION for stem in SOURCES):
      return song
  raise RuntimeError(f"no song of seed {base} and {seconds:g} s has every stem playing in "
                     f"{MIN_PLAYING_FRACTION:.0%} of its 1 s windows")


def _compose_once(seed, seconds: float) -> Song:
  song = Song(np.random.default_rng(seed), seconds)
  compose_drums(song)
  compose_bass(song)
  center = compose_vocals(song)
  compose_other(song, center)
  return song


# ----------------------------------------------------------------- rendering
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


def rms_db(x: np.ndarray) -> float:
  return float(10 * np.log10(max(np.mean(np.square(x, dtype=np.float64)), 1e-20)))


def render_song(song: Song, soundfont: bytes, sample_rate: int = SAMPLE_RATE):
  """Stems ``(4, time, 2)`` float32 at realistic relative levels, never clipping."""
  rng = song.rng
  num_samples = int(round(song.seconds * sample_rate))
  stems, instruments = [], {}
  for source in SOURCES:
    audio, names = render_stem(song.parts[source], soundfont, num_samples, sample_rate)
    stems.append(audio)
    instruments[source] = names
  stems = np.stack(stems)                                         # (4, T, 2)
  # Levels relative to the drums, in dB of RMS, spread as mixes differ.
  offsets = {"drums": rng.normal(0, 2), "bass": rng.normal(-2, 2.5),
             "other": rng.normal(-1.5, 3), "vocals": rng.normal(1, 2.5)}
  for i, source in enumerate(SOURCES):
    level = rms_db(stems[i])
    if level > -100:
      stems[i] *= np.float32(10 ** ((offsets[source] - level + -20) / 20))
  fade = min(int(0.02 * sample_rate), num_samples // 2)   # no click at the cut
  if fade:
    stems[:, -fade:] *= np.linspace(1, 0, fade, dtype=np.float32)[:, None]
  peak = max(float(np.max(np.abs(stems.sum(axis=0)))), float(np.max(np.abs(stems))), 1e-9)
  target = float(rng.uniform(0.5, 0.9))
  stems *= np.float32(target / peak)
  return stems, instruments


def _quantize(stems: np.ndarray, subtype: str) -> tuple[np.ndarray, np.ndarray]:
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


def track_name(number: int, song: Song) -> str:
  return f"Synth {number:04d} - {song.style.capitalize()} in {song.key_name}"


def make_track(job: dict) -> dict:
  """Composes, renders and writes one track folder; returns its metadata."""
  from attnsep_jax.audio import write_audio
  started = time.process_time()
  song = compose((job["seed"], job["number"]), job["seconds"])
  with open(job["soundfont"], "rb") as f:
    soundfont = f.read()
  stems, instruments = render_song(song, soundfont, job["sample_rate"])
  stems_q, mixture_q = _quantize(stems, job["subtype"])
  name = track_name(job["number"], song)
  folder = os.path.join(job["root"], job["subset"], name)
  os.makedirs(folder)
  for stem, audio in zip(("mixture",) + SOURCES, [mixture_q] + list(stems_q)):
    write_audio(os.path.join(folder, f"{stem}.wav"), audio, job["sample_rate"],
                subtype=job["subtype"])
  as_float = stems_q.astype(np.float32) / (32768.0 if job["subtype"] == "PCM_16" else 1.0)
  return dict(
      name=name, subset=job["subset"], number=job["number"], style=song.style,
      tempo_bpm=song.tempo_bpm, key=song.key_name,
      progressions={k: [int(d) + 1 for d in v] for k, v in song.progressions.items()},
      sections=[s["kind"] for s in song.sections], bass_figure=song.bass_figure,
      instruments=instruments,
      levels_dbfs={s: round(rms_db(a), 2) for s, a in zip(SOURCES, as_float)},
      peak=round(float(np.max(np.abs(as_float.sum(axis=0)))), 4),
      cpu_seconds=time.process_time() - started)


# ----------------------------------------------------------------- corpus
def default_soundfont() -> str:
  """pretty_midi's bundled TimGM6mb: the same file on every machine, so the
  same arguments give the same corpus everywhere (pass FLUID_R3 or any other
  soundfont explicitly, e.g. for a test set of instruments training never heard)."""
  import importlib.util
  spec = importlib.util.find_spec("pretty_midi")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("no soundfont: install pretty_midi or fluid-soundfont-gm, "
                            "or pass --soundfont")
  return os.path.join(list(spec.submodule_search_locations)[0], "TimGM6mb.sf2")


def mus_yaml(validation: list[str], sample_rate: int) -> dict:
  """A musdb setup file (musdb's mus.yaml keys) with our validation tracks."""
  return {
      "sample_rate": float(sample_rate),
      "sources": {s: f"{s}.wav" for s in ("vocals", "drums", "bass", "other")},
      "mixture": "mixture.wav",
      "stem_ids": {"mixture": 0, "drums": 1, "bass": 2, "other": 3, "vocals": 4},
      "targets": {"vocals": {"vocals": 1}, "drums": {"drums": 1}, "bass": {"bass": 1},
                  "other": {"other": 1},
                  "accompaniment": {"bass": 1, "drums": 1, "other": 1},
                  "linear_mixture": {"vocals": 1, "bass": 1, "drums": 1, "other": 1}},
      "validation_tracks": validation,
  }


def generate_corpus(out: str, tracks: int = 12, test_tracks: int = 4, valid_tracks: int | None = None,
                    seconds: float = 20.0, seed: int = 0, soundfont: str | None = None,
                    sample_rate: int = SAMPLE_RATE, subtype: str = "PCM_16", workers: int = 1,
                    force: bool = False, progress: bool = False) -> dict:
  """Writes a corpus to ``out`` and returns its metadata (also in out/corpus.json).

  Args:
    out: corpus folder; must be absent or empty, or a previous corpus with ``force``.
    tracks: number of tracks in the train subset (validation tracks included).
    test_tracks: number of tracks in the test subset.
    valid_tracks: train tracks listed for validation (None: max(1, tracks // 6)).
    seconds: length of each track, in seconds.
    seed: selects every song.
    soundfont: .sf2/.sf3 file (None: ``default_soundfont()``).
    sample_rate: in Hz.
    subtype: "PCM_16" (as MUSDB18-HQ; exact sums) or "FLOAT".
    workers: processes rendering tracks in parallel.
    force: replace an existing corpus (a folder holding corpus.json).
    progress: show a tqdm progress bar.
  """
  import yaml
  out = os.path.abspath(out)
  _check_output(out, force)
  if tracks < 1 or test_tracks < 0 or seconds <= 0:
    raise ValueError("need tracks >= 1, test_tracks >= 0 and seconds > 0")
  if subtype not in ("PCM_16", "FLOAT"):
    raise ValueError(f"subtype must be PCM_16 or FLOAT, got {subtype!r}")
  soundfont = os.path.abspath(soundfont or default_soundfont())
  if not os.path.isfile(soundfont):
    raise FileNotFoundError(f"soundfont not found: {soundfont}")
  valid_tracks = max(1, tracks // 6) if valid_tracks is None else valid_tracks
  if valid_tracks >= tracks and tracks > 1:
    raise ValueError("valid_tracks must leave at least one training track")
  parent = os.path.dirname(out)
  os.makedirs(parent, exist_ok=True)
  # Build beside the target and rename at the end: an interrupted run never
  # leaves a half corpus under the final name.
  tmp = tempfile.mkdtemp(prefix="." + os.path.basename(out) + ".partial-", dir=parent)
  try:
    for subset in ("train", "test"):
      os.makedirs(os.path.join(tmp, subset))
    jobs = [dict(root=tmp, subset="train" if n <= tracks else "test", number=n, seed=seed,
                 seconds=seconds, soundfont=soundfont, sample_rate=sample_rate, subtype=subtype)
            for n in range(1, tracks + test_tracks + 1)]
    started = time.perf_counter()
    results = _run_jobs(jobs, workers, progress)
    wall = time.perf_counter() - started
    results.sort(key=lambda r: r["number"])
    train = [r for r in results if r["subset"] == "train"]
    valid = sorted(r["name"] for r in train[len(train) - valid_tracks:]) if valid_tracks else []
    for r in results:
      r["split"] = "valid" if r["name"] in valid else r["subset"]
    with open(os.path.join(tmp, "mus.yaml"), "w") as f:
      yaml.safe_dump(mus_yaml(valid, sample_rate), f, sort_keys=False)
    meta = dict(
        format=FORMAT, seed=seed, seconds=seconds, sample_rate=sample_rate, subtype=subtype,
        soundfont=dict(path=soundfont, name=os.path.basename(soundfont), sha256=_sha256(soundfont),
                       licence=SOUNDFONT_LICENCES.get(os.path.basename(soundfont), "see its source")),
        validation_tracks=valid,
        tracks=[{k: v for k, v in r.items() if k != "cpu_seconds"} for r in results])
    with open(os.path.join(tmp, "corpus.json"), "w") as f:
      json.dump(meta, f, indent=1)
    if os.path.exists(out):
      _clear_previous(out)
    os.replace(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  # Timings stay out of corpus.json so that the same seed gives the same files.
  return dict(meta, wall_seconds=wall,
              cpu_seconds=sum(r["cpu_seconds"] for r in results), root=out)


def _run_jobs(jobs, workers: int, progress: bool) -> list[dict]:
  from tqdm import tqdm
  bar = tqdm(total=len(jobs), unit="track", disable=not progress, desc="rendering")
  results = []
  if workers <= 1 or len(jobs) == 1:
    for job in jobs:
      results.append(make_track(job))
      bar.update()
  else:
    # spawn, not fork: the caller may hold threads (JAX, prefetchers).
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
      for result in pool.imap_unordered(make_track, jobs):
        results.append(result)
        bar.update()
  bar.close()
  return results


def _check_output(out: str, force: bool) -> None:
  if not os.path.exists(out):
    return
  if not os.path.isdir(out):
    raise FileExistsError(f"{out} exists and is not a folder")
  if not os.listdir(out):
    return
  is_corpus = os.path.isfile(os.path.join(out, "corpus.json"))
  if not force:
    raise FileExistsError(f"{out} is not empty; pass --force to replace "
                          f"{'the corpus in it' if is_corpus else 'it'}")
  if not is_corpus:
    raise FileExistsError(f"{out} is not empty and holds no corpus.json; refusing to delete "
                          "what this tool did not write, even with --force")


def _clear_previous(out: str) -> None:
  """Removes a previous corpus (only what this tool writes) so that out can be replaced."""
  for name in ("train", "test"):
    shutil.rmtree(os.path.join(out, name), ignore_errors=True)
  for name in ("corpus.json", "mus.yaml"):
    if os.path.exists(os.path.join(out, name)):
      os.remove(os.path.join(out, name))
  if os.listdir(out):
    raise FileExistsError(f"{out} holds files besides a corpus: {sorted(os.listdir(out))[:5]}")
  os.rmdir(out)


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m attnsep_jax.data.synth",
      description="Generate the built-in multitrack corpus in MUSDB18-HQ layout.")
  parser.add_argument("--out", required=True, help="corpus folder to create (e.g. data/synth)")
  parser.add_argument("--tracks", type=int, default=12,
                      help="tracks in the train subset, validation included (default 12)")
  parser.add_argument("--test-tracks", type=int, default=None,
                      help="tracks in the test subset (default: tracks // 3, at least 1)")
  parser.add_argument("--valid-tracks", type=int, default=None,
                      help="train tracks listed for validation (default: tracks // 6, at least 1)")
  parser.add_argument("--seconds", type=float, default=20.0, help="length of each track (s)")
  parser.add_argument("--seed", type=int, default=0, help="selects every song (default 0)")
  parser.add_argument("--soundfont", default=None,
                      help="an .sf2/.sf3 file (default: pretty_midi's TimGM6mb.sf2; "
                           f"Debian's fluid-soundfont-gm installs {FLUID_R3})")
  parser.add_argument("--subtype", default="PCM_16", choices=("PCM_16", "FLOAT"),
                      help="wav sample format (default PCM_16, as MUSDB18-HQ)")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="parallel processes (default: CPU count)")
  parser.add_argument("--force", action="store_true",
                      help="replace an existing corpus in --out")
  args = parser.parse_args(argv)
  test_tracks = max(1, args.tracks // 3) if args.test_tracks is None else args.test_tracks
  try:
    meta = generate_corpus(args.out, args.tracks, test_tracks, args.valid_tracks, args.seconds,
                           args.seed, args.soundfont, subtype=args.subtype,
                           workers=args.workers, force=args.force, progress=True)
  except (FileExistsError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  audio_s = len(meta["tracks"]) * meta["seconds"]
  styles = sorted({t["style"] for t in meta["tracks"]})
  size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(meta["root"]) for f in fs)
  print(f"wrote {len(meta['tracks'])} tracks ({audio_s:.0f} s of audio; "
        f"{sum(t['subset'] == 'train' for t in meta['tracks'])} train incl. "
        f"{len(meta['validation_tracks'])} valid, "
        f"{sum(t['subset'] == 'test' for t in meta['tracks'])} test) to {meta['root']}")
  print(f"styles: {', '.join(styles)}; soundfont: {meta['soundfont']['name']}; "
        f"{size / 2**20:.1f} MiB; {meta['wall_seconds']:.1f} s wall, "
        f"{audio_s / max(meta['cpu_seconds'], 1e-9):.0f} s of audio per CPU-second")
  return 0


if __name__ == "__main__":
  sys.exit(main())
