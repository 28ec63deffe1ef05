"""Training data: track index, augmentation, streaming loader, built-in corpus.

* ``musdb``: ``TrackIndex`` over MUSDB18 / MUSDB18-HQ / MUSDB-layout folders.
* ``augment``: pure NumPy augmentations (remix, gain, channel swap, polarity, shift).
* ``loader``: ``ChunkLoader`` (config.data), ``validation_tracks`` (batches are split over devices by
  ``attnsep_jax.train.distributed.shard_batch``).
* The built-in corpus generator is ``attnsep_jax.corpus`` (``attnsep corpus``).

See docs/data.md.
"""

from attnsep_jax.data.musdb import DataError, Track, TrackIndex  # noqa: F401
