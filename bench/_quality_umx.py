"""Open-Unmix trained by its own recipe, for bench/quality.py (peers' venv).

The recipe of openunmix 1.3.0's ``scripts/train.py`` with its MUSDB dataset,
built from openunmix's own classes and functions:

* one ``openunmix.model.OpenUnmix`` per target (3-layer BiLSTM, hidden 512),
  on the magnitude of an STFT with n_fft 4096, hop 1024
  (``transforms.make_filterbanks``, ``ComplexNorm``), input bins cut at
  16 kHz (``utils.bandwidth_to_max_bin``);
* input mean and scale from the statistics of the training mixtures (mono
  magnitude over every frame of every training track, std floored at 1e-4
  of its maximum), as its ``get_statistics``;
* batches of 16 excerpts of 6 s, each source from a random track at a random
  position (``random_track_mix``), with its ``gain`` (0.25-1.25) and
  ``channelswap`` source augmentations; MSE between the estimated and the true
  target magnitudes; Adam, lr 1e-3, weight decay 1e-5; ReduceLROnPlateau
  (factor 0.3, patience 80, cooldown 10) on the validation loss, stepped at
  each of the benchmark's validations (its script steps it once per epoch);
* separation with its ``Separator``: the four target models, one Wiener
  iteration (niter=1, as ``umxhq`` ships), iSTFT.

The four target models share one budget: they are trained round-robin, one
step each in turn, so each gets a quarter of it.

Imports torch and openunmix only inside ``Recipe``, so that quality.py (our
venv) can read ``DEFAULTS``.
"""

from __future__ import annotations

import random

import numpy as np

from bench import _quality_files as files

DEFAULTS = {
    "batch_size": 16,
    "segment_seconds": 6.0,
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "hidden_size": 512,
    "nfft": 4096,
    "nhop": 1024,
    "bandwidth": 16000,          # Hz; input bins above it are not fed to the model
    "lr_decay_patience": 80,
    "lr_decay_gamma": 0.3,
    "niter": 1,                  # Wiener iterations at separation
}
AUGMENTATIONS = ["gain", "channelswap"]   # its train.py default for MUSDB


def check_options(given: dict) -> dict:
  return files.resolve_options(DEFAULTS, given, "umx")


class Recipe:
  """Four target models, their optimisers, data and separator."""

  def __init__(self, options: dict, sources, sample_rate: int,
               train_tracks: list[dict] | None = None, seed: int = 0):
    import torch
    from bench._peer_worker import stub_torchaudio
    stub_torchaudio()
    from openunmix import data, model, transforms, utils

    self.options = o = check_options(options)
    self.sources, self.sample_rate = list(sources), sample_rate
    stft, _ = transforms.make_filterbanks(n_fft=o["nfft"], n_hop=o["nhop"],
                                          sample_rate=sample_rate)
    self.encoder = torch.nn.Sequential(stft, model.ComplexNorm(mono=False))
    mean = scale = None
    if train_tracks is not None:
      mean, scale = self._statistics(train_tracks)
    max_bin = utils.bandwidth_to_max_bin(sample_rate, o["nfft"], o["bandwidth"])
    self.models = {s: model.OpenUnmix(nb_bins=o["nfft"] // 2 + 1, nb_channels=2,
                                      hidden_size=o["hidden_size"], max_bin=max_bin,
                                      input_mean=mean, input_scale=scale)
                   for s in self.sources}
    # As openunmix.umxhq builds it around its target models.
    self.separator = model.Separator(target_models=self.models, niter=o["niter"],
                                     residual=False, sample_rate=sample_rate,
                                     n_fft=o["nfft"], n_hop=o["nhop"], nb_channels=2,
                                     wiener_win_len=300, filterbank="torch")
    if train_tracks is not None:
      self.tracks = [dict(t, frames=files.track_frames(t["dir"])) for t in train_tracks]
      self.random = random.Random(seed)
      self.augment = data.aug_from_str(AUGMENTATIONS)
      self.optimizers = {s: torch.optim.Adam(m.parameters(), lr=o["lr"],
                                             weight_decay=o["weight_decay"])
                         for s, m in self.models.items()}
      self.schedulers = {s: torch.optim.lr_scheduler.ReduceLROnPlateau(
          opt, factor=o["lr_decay_gamma"], patience=o["lr_decay_patience"], cooldown=10)
          for s, opt in self.optimizers.items()}

  # ------------------------------------------------------------------ data
  def _magnitude(self, audio: np.ndarray):
    """(time, 2) or (batch, 2, time) audio -> its training-encoder magnitude."""
    import torch
    x = torch.from_numpy(np.ascontiguousarray(audio.T)[None]) if audio.ndim == 2 else audio
    return self.encoder(x)

  def _statistics(self, train_tracks):
    """Mean and std of the mono mixture magnitude over every training frame."""
    total = total_sq = count = 0
    for track in train_tracks:
      mixture = files.read_stems(track["dir"], ("mixture",))[0]
      frames = self._magnitude(mixture).mean(1)[0].T.double().numpy()   # (frames, bins)
      total, total_sq = total + frames.sum(0), total_sq + np.square(frames).sum(0)
      count += len(frames)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    return mean, np.maximum(std, 1e-4 * np.max(std))

  def _batch(self, target: str):
    """Mixtures and targets (batch, 2, time) drawn as its MUSDBDataset draws them."""
    import torch
    length = int(self.options["segment_seconds"] * self.sample_rate)
    mixtures, targets = [], []
    for _ in range(self.options["batch_size"]):
      stems = []
      for source in self.sources:
        track = self.random.choice(self.tracks)
        start = int(self.random.uniform(0, max(track["frames"] - length, 0)))
        audio = files.read_stems(track["dir"], (source,), start, length)[0]
        stems.append(self.augment(torch.from_numpy(np.ascontiguousarray(audio.T))))
      stems = torch.stack(stems)
      mixtures.append(stems.sum(0))
      targets.append(stems[self.sources.index(target)])
    return torch.stack(mixtures), torch.stack(targets)

  # ------------------------------------------------------------------ steps
  def train_step(self, step: int) -> float:
    import torch
    target = self.sources[step % len(self.sources)]
    model, optimizer = self.models[target], self.optimizers[target]
    model.train()
    x, y = self._batch(target)
    loss = torch.nn.functional.mse_loss(model(self.encoder(x)), self.encoder(y))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()

  def after_validation(self, tracks) -> dict:
    """Its validation loss per target on the whole validation tracks; steps
    the plateau schedulers with it."""
    import torch
    losses = {}
    with torch.no_grad():
      for target, model in self.models.items():
        model.eval()
        index = self.sources.index(target)
        losses[target] = float(np.mean([
            torch.nn.functional.mse_loss(model(self._magnitude(mixture)),
                                         self._magnitude(refs[index])).item()
            for _, mixture, refs in tracks]))
        self.schedulers[target].step(losses[target])
    return {f"loss_{t}": v for t, v in losses.items()}

  def separate(self, mixture: np.ndarray) -> np.ndarray:
    """(time, 2) -> (sources, time, 2) through its Separator."""
    import torch
    self.separator.eval()
    with torch.no_grad():
      audio = torch.from_numpy(np.ascontiguousarray(mixture.T)[None])
      estimates = self.separator(audio)[0]                     # (sources, 2, time)
    return estimates.numpy().transpose(0, 2, 1)

  # ------------------------------------------------------------------ state
  def params(self) -> int:
    return sum(p.numel() for m in self.models.values() for p in m.parameters())

  def state_dict(self) -> dict:
    return {s: m.state_dict() for s, m in self.models.items()}

  def load_state_dict(self, state: dict) -> None:
    for source, model in self.models.items():
      model.load_state_dict(state[source])

  def versions(self) -> dict:
    import importlib.metadata
    return {p: importlib.metadata.version(p) for p in ("torch", "openunmix")}
