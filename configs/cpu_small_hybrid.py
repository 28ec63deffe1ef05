"""The recommended recipe for a CPU-hour or more: cpu_small plus a spectral branch.

configs/cpu_small.py with the ablation configs/ablations/spectral_branch.py
applied: a Hybrid-Demucs-style spectral U-Net beside the waveform U-Net (half
its widths), meeting it at the bottleneck and adding stems of its own
(docs/architecture.md, "Spectral branch"), trained at twice cpu_small's
learning rate with a multi-resolution STFT term added to the L1 loss
(docs/architecture.md, "Loss"). On instruments never heard in
training it separates better than cpu_small in the same hour (docs/quality.md),
although each step costs about 3.3 times as much. In budgets of minutes the
dearer step outweighs the gain, so the quick start keeps configs/cpu_small.py.
"""

from attnsep_jax.config import load_ablation, load_config, sibling


def get_config():
  small = load_config(sibling(__file__, "cpu_small.py"))
  config = load_ablation(sibling(__file__, "ablations/spectral_branch.py"))(small)
  # The cosine ends at num_steps. On one core of a 2-core AMD EPYC, with the
  # other core busy, a step takes about 1.3 s with the C heap kept
  # (attnsep_jax.heap; 1.95-2.0 s without): an hour holds about 2,650 steps
  # (2,550 in 57 min). (The branch on the bins below 11 kHz,
  # spectral_bins=1024, trains a quarter more steps in the hour but
  # separates unseen instruments no better: docs/architecture.md,
  # "Bandwidth".)
  config.train.num_steps = 2650
  # Twice cpu_small's learning rate: one CPU-hour against 1e-3 (seed 8 side
  # by side, seed 7 against an earlier hour), better on the validation songs
  # at every point (+0.5-0.7 dB at the end) and on unseen instruments, +0.25
  # dB per song (docs/quality.md, "the hybrid recipe's learning rate").
  config.optim.learning_rate = 2e-3
  # BS-RoFormer's multi-resolution STFT term beside the waveform L1: one
  # CPU-hour, seeds 8 and 10, 4.10 and 4.12 dB on unseen instruments against
  # the recipe without it at 4.02 and 3.49, +0.30 dB per song [-0.03, +0.69],
  # 7/10 (docs/quality.md). Its step costs about a quarter more, so an hour
  # holds fewer steps.
  config.loss.stft_weight = 1.0
  config.loss.stft_fft_sizes = (4096, 1024, 256)
  return config
