"""The built-in corpus: layout, exact sums, no clipping, determinism, variety, audibility."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from attnsep_jax import SAMPLE_RATE, SOURCES
from attnsep_jax.corpus import generate_corpus
from attnsep_jax.corpus.compose import MIN_PLAYING_FRACTION, _compose_once, compose, playing_fraction
from attnsep_jax.corpus.render import default_soundfont, render_song
from attnsep_jax.corpus.styles import STYLES
from attnsep_jax.data.augment import rms_db
from attnsep_jax.data.musdb import TrackIndex

STEMS = ("mixture",) + SOURCES


def test_layout_and_metadata(synth_corpus):
  for subset, count in (("train", 3), ("test", 2)):
    names = sorted(os.listdir(os.path.join(synth_corpus, subset)))
    assert len(names) == count
    for name in names:
      assert name.startswith("Synth ") and " in " in name
      files = sorted(os.listdir(os.path.join(synth_corpus, subset, name)))
      assert files == sorted(f"{s}.wav" for s in STEMS)
      for stem in STEMS:
        info = sf.info(os.path.join(synth_corpus, subset, name, f"{stem}.wav"))
        assert (info.channels, info.samplerate, info.frames) == (2, 44100, int(3.5 * 44100))
        assert info.subtype == "PCM_16"
  meta = json.load(open(os.path.join(synth_corpus, "corpus.json")))
  assert meta["seed"] == 7 and [f["name"] for f in meta["soundfonts"]] == ["TimGM6mb.sf2"]
  assert len(meta["soundfonts"][0]["sha256"]) == 64
  train_names = sorted(os.listdir(os.path.join(synth_corpus, "train")))
  assert meta["validation_tracks"] == train_names[-1:]
  for track in meta["tracks"]:
    assert set(track["instruments"]) == set(SOURCES)
    assert track["soundfonts"] == {s: "TimGM6mb.sf2" for s in SOURCES}
    assert 70 <= track["tempo_bpm"] <= 170
    assert track["style"] in STYLES


def test_mixture_is_exact_sum_and_nothing_clips(synth_corpus):
  index = TrackIndex(synth_corpus)
  for track in index.all_tracks():
    mixture, sources = index.read_track(track)
    # PCM_16 corpus: integer samples sum exactly, so the tolerance is zero.
    np.testing.assert_array_equal(mixture, sources.sum(axis=0))
    assert np.abs(mixture).max() <= 0.9 + 1e-4
    assert np.abs(sources).max() <= 0.9 + 1e-4
    # Every stem sounds somewhere (no silent stem teaches nothing).
    assert np.all(np.sqrt(np.mean(sources ** 2, axis=(1, 2))) > 1e-3), track.name


def test_float_subtype_sum_is_exact(tmp_path):
  root = str(tmp_path / "f")
  generate_corpus(root, tracks=1, test_tracks=0, valid_tracks=0, seconds=1.0, seed=3,
                        subtype="FLOAT")
  index = TrackIndex(root)
  mixture, sources = index.read_track(index.all_tracks()[0])
  assert sf.info(index.all_tracks()[0].file("vocals")).subtype == "FLOAT"
  np.testing.assert_array_equal(mixture, sources.sum(axis=0))


def test_same_seed_gives_identical_files(tmp_path, synth_corpus):
  # Track numbers and the seed fix a song: regenerating 1 track of seed 7
  # reproduces the first train track of the session corpus byte for byte.
  root = str(tmp_path / "again")
  generate_corpus(root, tracks=1, test_tracks=0, valid_tracks=0, seconds=3.5, seed=7)
  name = sorted(os.listdir(os.path.join(root, "train")))[0]
  assert name == sorted(os.listdir(os.path.join(synth_corpus, "train")))[0]
  for stem in STEMS:
    with open(os.path.join(root, "train", name, f"{stem}.wav"), "rb") as a, \
         open(os.path.join(synth_corpus, "train", name, f"{stem}.wav"), "rb") as b:
      assert a.read() == b.read(), stem


def test_different_seeds_vary_styles_tempos_keys_and_instruments():
  songs = [compose((seed, 1), 8.0) for seed in range(16)]
  assert len({s.style for s in songs}) >= 4
  assert len({s.tempo_bpm for s in songs}) >= 8
  assert len({s.key_name for s in songs}) >= 6
  assert len({p.preset for s in songs for p in s.parts["vocals"]}) >= 4
  assert len({p.preset for s in songs for p in s.parts["other"]}) >= 8
  assert all(60 <= s.tempo_bpm <= 170 for s in songs)


def test_hard_to_separate_by_frequency():
  """Bass sits in the kick's octave; some songs voice "other" in the lead's range."""
  songs = [compose((seed, 1), 8.0) for seed in range(16)]
  bass_keys = [n[2] for s in songs for p in s.parts["bass"] for n in p.notes]
  assert min(bass_keys) < 40
  overlapping = 0
  for s in songs:
    lead = [n[2] for n in s.parts["vocals"][0].notes]
    other = [n[2] for p in s.parts["other"] for n in p.notes]
    if lead and other and max(other) >= min(lead) and min(other) <= max(lead):
      overlapping += 1
  assert overlapping >= len(songs) // 2


def test_vocals_have_pitch_expression():
  song = compose((0, 1), 8.0)
  assert len(song.parts["vocals"][0].bends) > 10


def test_every_stem_of_every_track_is_audible():
  """Seed 7, 6 s, track 3 once had vocals silent from start to end (museval
  scores such a stem NaN on every window); its plan is now drawn again."""
  first_plan = _compose_once((7, 3), 6.0)
  assert playing_fraction(first_plan, "vocals") == 0.0
  song = compose((7, 3), 6.0)
  stems, _ = render_song(song, open(default_soundfont(), "rb").read())
  window = SAMPLE_RATE
  for stem, audio in zip(SOURCES, stems):
    loud = [rms_db(audio[i:i + window]) > -60 for i in range(0, len(audio), window)]
    assert np.mean(loud) >= MIN_PLAYING_FRACTION, (stem, loud)
  for seed in range(40):   # short songs are the likeliest to fall short
    song = compose((seed, 0), 4.0)
    assert min(playing_fraction(song, s) for s in SOURCES) >= MIN_PLAYING_FRACTION


def test_several_soundfonts_draw_one_per_stem_and_change_no_song(tmp_path, capsys):
  from attnsep_jax.corpus.__main__ import main
  fonts = []
  for name in ("a.sf2", "b.sf2"):   # the same instruments under two names
    fonts.append(str(tmp_path / name))
    with open(fonts[-1], "wb") as f:
      f.write(open(default_soundfont(), "rb").read())
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  generate_corpus(one, tracks=4, test_tracks=0, valid_tracks=0, seconds=0.5, seed=7,
                  soundfont=fonts[0])
  assert main(["--out", two, "--tracks", "4", "--test-tracks", "0", "--valid-tracks", "0",
               "--seconds", "0.5", "--seed", "7", "--workers", "1", "--soundfont", *fonts]) == 0
  assert "soundfonts: a.sf2, b.sf2" in capsys.readouterr().out
  meta = json.load(open(os.path.join(two, "corpus.json")))
  assert [f["name"] for f in meta["soundfonts"]] == ["a.sf2", "b.sf2"]
  drawn = [t["soundfonts"] for t in meta["tracks"]]
  assert all(set(d) == set(SOURCES) and set(d.values()) <= {"a.sf2", "b.sf2"} for d in drawn)
  assert {n for d in drawn for n in d.values()} == {"a.sf2", "b.sf2"}
  assert any(len(set(d.values())) > 1 for d in drawn)   # drawn per stem, not per song
  # The draw has a stream of its own: the songs and levels are those of one soundfont.
  for track in TrackIndex(one).all_tracks():
    for stem in STEMS:
      a, b = (sf.read(os.path.join(root, "train", track.name, f"{stem}.wav"))[0]
              for root in (one, two))
      np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="twice"):
    generate_corpus(str(tmp_path / "x"), tracks=1, test_tracks=0, seconds=0.5,
                    soundfont=[fonts[0], fonts[0]])
  with pytest.raises(FileNotFoundError, match="missing.sf2"):
    generate_corpus(str(tmp_path / "x"), tracks=1, test_tracks=0, seconds=0.5,
                    soundfont=[fonts[0], str(tmp_path / "missing.sf2")])
  assert not os.path.exists(tmp_path / "x")
