"""attnsep-jax: attention-based end-to-end music source separation in JAX/Flax.

Conventions used across the package (written once, here):

* Audio arrays are ``(batch, time, channels)``; stems are
  ``(batch, sources, time, channels)``; ``channels`` is 2 (stereo).
* Sources are ordered as in ``SOURCES`` (musdb's order).
* Sample values are float32 in [-1, 1] at ``SAMPLE_RATE`` Hz.
"""

SOURCES = ("drums", "bass", "other", "vocals")
SAMPLE_RATE = 44100
AUDIO_CHANNELS = 2

__version__ = "0.1.0"
