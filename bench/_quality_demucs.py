"""A Demucs-v2-style waveform model trained by its own recipe, for bench/quality.py.

Built from demucs 4.1.0's own classes:

* ``demucs.demucs.Demucs`` with the v2 settings (2-layer BiLSTM at the
  bottleneck, 1x1 GLU rewrite convolutions, decoder context 1 (kernel 3), no
  DConv branches, ReLU, no group norm, weight rescale 0.1, x2 resampling,
  input normalisation on), scaled down to our size: ``channels`` 8 instead of
  64 at v2's depth 6, 4.2 M parameters (``channels=6``: 2.3 M);
* Demucs v2's training recipe: aligned excerpts of segment + 1 s from a
  random track, then its augmentations from ``demucs.augment`` in v2's order
  (random shift of up to 1 s per source, sign flip, channel swap, scale
  0.25-1.25, remix of the sources across the batch in groups of 4); L1 loss
  on the waveforms; Adam, lr 3e-4;
* separation with ``demucs.apply.apply_model`` (split into segments of the
  training length, overlap 0.25, no shifts).

v2 trained with batch 64 on 10 s excerpts on 8 GPUs; on one core the default
here is batch 4 (one remix group) of 5 s excerpts, about 2 s per step and as
many audio seconds per second of training as our cpu_small (docs/quality.md).

Imports torch and demucs only inside ``Recipe``, so that quality.py (our
venv) can read ``DEFAULTS``.
"""

from __future__ import annotations

import random

import numpy as np

from bench import _quality_files as files

DEFAULTS = {
    "channels": 8,
    "depth": 6,
    "batch_size": 4,             # a multiple of the remix group (4)
    "segment_seconds": 5.0,
    "shift_seconds": 1.0,        # random shift augmentation (v2: data_stride, 1 s)
    "lr": 3e-4,
}
REMIX_GROUP = 4


def check_options(given: dict) -> dict:
  options = files.resolve_options(DEFAULTS, given, "demucs")
  if options["batch_size"] % REMIX_GROUP:
    raise ValueError(f"demucs batch_size must be a multiple of {REMIX_GROUP} "
                     f"(its remix augmentation's group), got {options['batch_size']}")
  return options


class Recipe:
  """The model, its optimiser, data and augmentations."""

  def __init__(self, options: dict, sources, sample_rate: int,
               train_tracks: list[dict] | None = None, seed: int = 0):
    import torch
    from demucs import augment
    from demucs.demucs import Demucs

    self.options = o = check_options(options)
    self.sources, self.sample_rate = list(sources), sample_rate
    self.model = Demucs(self.sources, audio_channels=2, channels=o["channels"],
                        depth=o["depth"], lstm_layers=2, context=1, dconv_mode=0,
                        gelu=False, norm_starts=100, normalize=True, rescale=0.1,
                        samplerate=sample_rate, segment=o["segment_seconds"])
    if train_tracks is not None:
      self.tracks = [dict(t, frames=files.track_frames(t["dir"])) for t in train_tracks]
      self.random = random.Random(seed)
      self.augment = torch.nn.Sequential(
          augment.Shift(shift=int(o["shift_seconds"] * sample_rate)), augment.FlipSign(),
          augment.FlipChannels(), augment.Scale(proba=1.0, min=0.25, max=1.25),
          augment.Remix(proba=1, group_size=REMIX_GROUP))
      self.optimizer = torch.optim.Adam(self.model.parameters(), lr=o["lr"])

  def _batch(self):
    """Aligned (batch, sources, 2, segment + shift) excerpts, each of a random
    track (weighted by length, as its dataset's examples) at a random position."""
    import torch
    length = int((self.options["segment_seconds"] + self.options["shift_seconds"])
                 * self.sample_rate)
    weights = [t["frames"] for t in self.tracks]
    rows = []
    for track in self.random.choices(self.tracks, weights, k=self.options["batch_size"]):
      start = self.random.randint(0, max(track["frames"] - length, 0))
      stems = files.read_stems(track["dir"], self.sources, start, length)   # (S, T, 2)
      rows.append(torch.from_numpy(np.ascontiguousarray(stems.transpose(0, 2, 1))))
    return torch.stack(rows)

  def train_step(self, step: int) -> float:
    import torch
    self.model.train()
    sources = self.augment(self._batch())
    loss = torch.nn.functional.l1_loss(self.model(sources.sum(dim=1)), sources)
    self.optimizer.zero_grad()
    loss.backward()
    self.optimizer.step()
    return loss.item()

  def after_validation(self, tracks) -> dict:
    return {}   # v2 keeps a fixed learning rate

  def separate(self, mixture: np.ndarray) -> np.ndarray:
    """(time, 2) -> (sources, time, 2) through apply_model."""
    import torch
    from demucs.apply import apply_model
    self.model.eval()
    with torch.no_grad():
      audio = torch.from_numpy(np.ascontiguousarray(mixture.T)[None])
      estimates = apply_model(self.model, audio, shifts=0, split=True, overlap=0.25,
                              progress=False, device="cpu")[0]      # (sources, 2, time)
    return estimates.numpy().transpose(0, 2, 1)

  def params(self) -> int:
    return sum(p.numel() for p in self.model.parameters())

  def state_dict(self) -> dict:
    return self.model.state_dict()

  def load_state_dict(self, state: dict) -> None:
    self.model.load_state_dict(state)

  def versions(self) -> dict:
    import importlib.metadata
    return {p: importlib.metadata.version(p) for p in ("torch", "demucs")}
