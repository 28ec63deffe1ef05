"""The recommended recipe for a CPU-hour or more: cpu_small plus a spectral branch.

configs/cpu_small.py with the ablation configs/ablations/spectral_branch.py
applied: a Hybrid-Demucs-style spectral U-Net beside the waveform U-Net (half
its widths) over the STFT bins below 11 kHz, meeting it at the bottleneck and
adding stems of its own (docs/architecture.md, "Spectral branch"). On
instruments never heard in training it separates better than cpu_small in
the same hour (docs/quality.md), although each step costs about twice as
much. In budgets of minutes the dearer step outweighs the gain, so the quick
start keeps configs/cpu_small.py.
"""

from attnsep_jax.config import load_ablation, load_config, sibling


def get_config():
  small = load_config(sibling(__file__, "cpu_small.py"))
  config = load_ablation(sibling(__file__, "ablations/spectral_branch.py"))(small)
  # The branch on the bins below 11 kHz only (1,024 of 2,048; the waveform
  # branch covers the rest): the same validation SDR at equal steps, a
  # quarter more steps in an hour (docs/architecture.md, "Bandwidth").
  config.model.spectral_bins = 1024
  # The cosine ends at num_steps. On one core of a 2-core Intel Xeon, with the
  # other core busy, a step takes about 1.6 s: an hour is about 2,300 steps.
  config.train.num_steps = 2300
  return config
