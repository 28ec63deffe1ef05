"""Default experiment: the paper's model (see docs/architecture.md) on MUSDB18-HQ.

Every section maps onto the keyword arguments of what it builds:
  model     -> attnsep_jax.models.network.AttnSepNet
  loss      -> attnsep_jax.losses.separation_loss
  data      -> attnsep_jax.data.loader.ChunkLoader (and the track index)
  optim     -> attnsep_jax.train.state.make_optimizer
  train     -> attnsep_jax.train.loop.train_and_evaluate
  inference -> attnsep_jax.inference.separate
Other configs import this file and change what they need.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 42

  # Paper: N=6 encoder blocks, 32 channels doubling to 1024, stereo in, a
  # dual-path transformer separator at the bottleneck.  Choices where the
  # paper is silent follow Demucs v2 (convolutions) and DPTNet (separator).
  config.model = dict(
      num_sources=4,
      audio_channels=2,
      channels=(32, 64, 128, 256, 512, 1024),
      kernel_size=8,              # samples/frames, Demucs v2
      stride=4,                   # downsampling per block, Demucs v2
      depthwise_kernel_size=3,    # frames, Conv-TasNet's depthwise conv
      decoder_kernel_size=3,      # frames, Demucs v2's decoder "context"
      leaky_relu_slope=0.01,
      dense_connections="within_scale",  # within_scale | cross_scale | none
      dense_layers=2,             # depthwise-separable layers per dense block
      norm_groups=0,              # GroupNorm groups (0: none, as the paper)
      norm_starts=0,              # first U-Net level with GroupNorm
      rescale_init=0.0,           # Demucs' weight rescaling (0: off)
      spectral_channels=(),       # spectral branch widths (Hybrid Demucs); (): none
      spectral_output=True,       # the branch decodes stems too (False: input only)
      spectral_mask=False,        # its stems: masks of the mixture (False: complex, CaC)
      spectral_time_layers=0,     # time convs per spectral block (Hybrid Demucs: 2)
      spectral_freq_embedding=0.0,  # learnt per-bin vector after block 1 (Hybrid Demucs: 0.2)
      spectral_bins=0,            # STFT bins the branch sees, from 0 Hz (0: all)
      channel_attention=True,
      attention_reduction=8,      # squeeze-excitation bottleneck ratio
      separator="dual_path",      # dual_path | bilstm | none
      separator_dim=256,          # feature width inside the separator
      num_dual_path_blocks=6,     # B, DPTNet
      chunk_frames=16,            # K, bottleneck frames (~1.5 s at 44.1 kHz)
      hop_frames=8,               # P = K/2, DPTNet
      num_heads=8,
      ffn="bilstm",               # bilstm | linear
      ffn_hidden=256,             # per LSTM direction (or linear width)
      positional_encoding="none", # none | sinusoidal
      separator_norm="post",      # post (DPTNet) | pre (HT Demucs)
      layer_scale_init=0.0,       # LayerScale of pre-norm branches (0: none)
      dropout_rate=0.0,
      normalize_input=True,
      mixture_consistency=False,  # stems projected to sum to the mixture
      soft_mask_power=0.0,        # stems as STFT ratio masks in the network (0: off)
      soft_mask_fft_size=8192,    # that STFT's window, samples
      wiener_iterations=0,        # multichannel Wiener (EM) steps after the mask
      remat_separator=False,
      dtype="float32",            # compute dtype; parameters stay float32
  )

  config.loss = dict(
      kind="relative_mse",        # relative_mse | l1 | mse | sdr
      eps=1e-3,
      reduction="sample",         # relative_mse's |.|: per sample | segment norm
      eps_scale="absolute",       # eps in waveform units | x mixture RMS
      l1_warmup_steps=0,          # L1 for the first steps, then `kind`
      source_weights=(1.0, 1.0, 1.0, 1.0),
      stft_weight=0.0,            # + BS-RoFormer's multi-resolution STFT L1 (0: off)
      stft_fft_sizes=(4096, 2048, 1024, 512, 256),   # its windows, samples
      sdr_frame_samples=44100,    # "sdr": -SDR per frame of this many samples
      sdr_floor=1e-3,             # "sdr": error floor, x mixture frame energy
  )

  # Owned by attnsep_jax.data: exactly ChunkLoader's keyword arguments (the
  # runtime process_index/process_count come from jax).  Augmentation as
  # Demucs v2/v3: remix across tracks, gain 0.25-1.25, channel swap, sign
  # flip, a 1 s random shift per source.  See docs/data.md.
  config.data = dict(
      root="data/musdb18hq",      # MUSDB18-HQ: {train,test}/<track>/{mixture,...}.wav
      is_wav=True,                # False for MUSDB18 .stem.mp4
      sample_rate=44100,          # Hz
      segment_seconds=10.0,       # training chunk length
      batch_size=16,              # global batch, split over processes/devices
      seed=42,
      split="train",              # train | valid | train+valid (musdb's split)
      remix_probability=1.0,      # chance an example takes each source from its own track
      gain_range=(0.25, 1.25),    # linear gain per source; None: off
      channel_swap=True,
      polarity_flip=True,
      shift_seconds=1.0,          # per-source random offset in [0, shift]
      varispeed_probability=0.0,  # chance of a pitch+tempo change per example
      varispeed_semitones=2.0,    # largest varispeed change, semitones
      eq_probability=0.0,         # chance of a random EQ per source (timbre)
      eq_max_db=6.0,              # largest random-EQ boost or cut, dB
      silence_threshold_db=None,  # dBFS: redraw quieter source chunks; None: keep
      prefetch_batches=4,         # batches computed ahead in threads
      num_workers=4,              # threads computing batches
  )

  config.optim = dict(
      optimizer="adam",           # adam | adamw
      learning_rate=3e-4,         # Demucs v2
      warmup_steps=1000,
      decay="cosine",             # cosine | constant
      final_learning_rate_ratio=0.01,
      weight_decay=0.0,
      grad_clip_norm=5.0,         # DPTNet
      accumulate_steps=1,
      b1=0.9,
      b2=0.999,
      decay_steps=None,           # end of the cosine, in updates; None: the whole run
      # steps | time: with "time" the cosine also ends when
      # train.time_budget_seconds is spent, whichever comes first, so that a
      # budget of time needs no num_steps guessed from the machine's pace.
      # At the quick start's budget it loses 0.3 dB (docs/training.md).
      decay_clock="steps",
  )

  config.train = dict(
      num_steps=300_000,
      log_every_steps=50,
      eval_every_steps=5000,
      checkpoint_every_steps=5000,
      keep_checkpoints=3,
      ema_decay=0.999,
      # Stop once this much training time (validation excluded, summed over
      # resumes) is spent; None: train.num_steps alone decides.  The learning
      # rate schedule follows num_steps unless optim.decay_clock is "time".
      time_budget_seconds=None,
      # Train this many models one after another (seeds seed, seed+1, ...;
      # each with an equal share of time_budget_seconds) and separate with
      # the average of their stems (Demucs's bag of models); 1: one model.
      bag_size=1,
  )

  config.inference = dict(
      segment_seconds=10.0,
      overlap=0.25,
      shifts=0,
      batch_size=4,
      # Post-filter: each segment's stems as ratio masks |S_j|^p / sum_k |S_k|^p
      # of the mixture's STFT (attnsep_jax.masking); 0: the network's stems.
      soft_mask_power=0.0,
      soft_mask_fft_size=8192,
      # With the post-filter: Open-Unmix's multichannel Wiener filter, that
      # many EM iterations on the masked stems; 0: the masks alone.
      wiener_iterations=0,
  )
  return config
