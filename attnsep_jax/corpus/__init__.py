"""The built-in corpus: songs composed from a seed, rendered per stem from a SoundFont.

    attnsep corpus --out data/synth --tracks 12 --test-tracks 4 --seconds 20
    python -m attnsep_jax.corpus --out data/synth ...      # the same

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
soundfonts and, per track, its style, tempo, key, instruments, soundfonts and
levels.  With several soundfonts, each stem of each track is rendered with one
of them, drawn at random: more instrument timbres than any one soundfont has.
The same arguments give identical files.

* ``styles``: keys, progressions, drum patterns, per-style instruments.
* ``compose``: ``Song``, ``compose(seed, seconds)`` (every stem audible).
* ``render``: ``render_song`` with tinysoundfont, ``quantize``, soundfonts.
* ``write``: ``generate_corpus`` (the folder, mus.yaml, corpus.json).
* ``__main__``: the ``attnsep corpus`` command.
"""

from attnsep_jax.corpus.compose import (MIN_PLAYING_FRACTION, Part, Song, compose,  # noqa: F401
                                        playing_fraction)
from attnsep_jax.corpus.render import (MissingRendererError, default_soundfont,  # noqa: F401
                                       render_song)
from attnsep_jax.corpus.write import generate_corpus, soundfont_names  # noqa: F401
