"""Composition: the song of a seed, as MIDI-like parts per stem.

A ``Song`` draws a style, tempo, key, chord progressions and an arrangement
in sections; ``compose_*`` write a drum part, a bassline, accompaniment
("other") and a lead with backing harmonies ("vocals").  ``compose`` redraws
a plan until every stem plays in ``MIN_PLAYING_FRACTION`` of its 1 s windows.
Everything is a pure function of the seed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from attnsep_jax import SOURCES
from attnsep_jax.corpus.styles import (COUNTER, CRASH, DRUMS, HAT, KICK, NOTE_NAMES,
                                       PROGRESSIONS, RIDE, SCALES, SHAKER, SNARE, STYLES, TOMS,
                                       VOICE_BACKING)


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

