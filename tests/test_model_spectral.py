"""The spectral branch (Hybrid Demucs): its STFT framing and its place in the network."""

import jax
import numpy as np
import pytest

from attnsep_jax.losses import separation_loss
from attnsep_jax.models import spectral
from attnsep_jax.models.network import build_model, init_params, rescale_conv_weights


def test_complex_as_channels_inverts_per_source_and_lines_up_in_time():
  hop, frames = 64, 12
  t = np.arange(hop * frames) / 8000.0
  # Tones well below Nyquist: the dropped Nyquist bin holds nothing of them.
  x = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.cos(2 * np.pi * 1250 * t)], -1)
  x = x[None].astype(np.float32)                                   # (1, time, 2)
  cac = spectral.complex_as_channels(x, hop)
  assert cac.shape == (1, frames, 2 * hop, 4)                      # bins: 2 hops; 2 ch x re/im
  # Three sources: the mixture's spectrogram, twice it, and silence.
  stems = np.concatenate([cac, 2 * cac, 0 * cac], axis=-1)
  audio = np.asarray(spectral.waveform(stems, hop, num_sources=3))
  assert audio.shape == (1, hop * frames, 6)
  # Exact except the last two hops, which the dropped last frame would have
  # covered, and the dropped Nyquist bin (at the tones' abrupt onset, 1e-3).
  inside = slice(0, hop * (frames - 2))
  np.testing.assert_allclose(audio[0, inside, 0:2], x[0, inside], atol=2e-3)
  np.testing.assert_allclose(audio[0, inside, 2:4], 2 * x[0, inside], atol=4e-3)
  assert np.abs(audio[0, inside, 0:2] - x[0, inside]).mean() < 2e-4
  np.testing.assert_allclose(audio[0, :, 4:6], 0.0, atol=1e-6)


def test_spectral_bins_keep_the_low_band_and_give_the_high_band_back_as_silence():
  hop, frames, bins = 64, 12, 64                 # 256-point STFT at 8 kHz: bins below 2 kHz
  t = np.arange(hop * frames) / 8000.0
  low, high = np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 3000 * t)
  x = np.stack([low + high, low], -1)[None].astype(np.float32)    # (1, time, 2)
  cac = spectral.complex_as_channels(x, hop, bins)
  assert cac.shape == (1, frames, bins, 4)
  audio = np.asarray(spectral.waveform(cac, hop, num_sources=1))  # (1, time, 2)
  # Away from the ends: the tones' abrupt onset spreads above the cut.
  inside = slice(hop, hop * (frames - 2))
  np.testing.assert_allclose(audio[0, inside, 0], low[inside], atol=1e-3)
  np.testing.assert_allclose(audio[0, inside, 1], low[inside], atol=1e-3)


def test_spectral_bins_must_divide_into_the_blocks(tiny_config):
  # tiny: two blocks of stride 4, so the bins must be a multiple of 16 up to 32.
  model = build_model({**tiny_config.model, "spectral_channels": (4, 8), "spectral_bins": 24})
  with pytest.raises(ValueError, match="spectral_bins must be a multiple of the total stride 16"):
    init_params(model, jax.random.key(0))


def _without_output_block(params, decoder: str) -> dict:
  """``params`` with ``decoder``'s output block (conv -> GLU) zeroed: its stems are silent."""
  zeroed = jax.tree_util.tree_map(np.zeros_like, params[decoder]["block_0"])
  return {**params, decoder: {**params[decoder], "block_0": zeroed}}


@pytest.fixture(scope="module")
def hybrid(tiny_config):
  """The parameters of the tiny model with a spectral branch, and its jitted apply."""
  model = build_model({**tiny_config.model, "spectral_channels": (4, 8),
                       "spectral_time_layers": 1, "spectral_freq_embedding": 0.2})
  # Jitted: run eagerly, init and apply of the two U-Nets took 80 s in CI.
  params = jax.jit(lambda key: init_params(model, key))(jax.random.key(0))
  return params, jax.jit(model.apply)


def test_the_hybrid_network_keeps_every_length_and_trains_both_branches(tiny_config, hybrid):
  params, apply = hybrid
  assert {"spectral_encoder", "spectral_decoder", "encoder", "decoder"} <= set(params)
  rng = np.random.default_rng(0)
  for time in (1, 37):
    out = apply({"params": params}, rng.normal(size=(1, time, 2)).astype(np.float32))
    assert out.shape == (1, 4, time, 2) and np.all(np.isfinite(out))
  mixture = rng.normal(size=(2, 320, 2)).astype(np.float32) * 0.1
  sources = rng.normal(size=(2, 4, 320, 2)).astype(np.float32) * 0.05

  def loss_fn(p):
    return separation_loss(sources, apply({"params": p}, mixture), **tiny_config.loss)[0]

  grads = jax.jit(jax.grad(loss_fn))(params)
  for branch in ("spectral_encoder", "spectral_decoder"):
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads[branch]):
      leaf = np.asarray(leaf)
      assert np.all(np.isfinite(leaf)) and np.any(leaf != 0), (branch, jax.tree_util.keystr(path))


def test_weight_rescaling_reaches_the_convs_of_both_branches_and_nothing_else(hybrid):
  params, _ = hybrid
  reference = 0.1
  rescaled = rescale_conv_weights(params, reference)
  changed = set()
  for (path, before), after in zip(jax.tree_util.tree_leaves_with_path(params),
                                   jax.tree_util.tree_leaves(rescaled)):
    before, after = np.asarray(before), np.asarray(after)
    if np.array_equal(before, after):
      continue
    name = jax.tree_util.keystr(path)
    changed.add(str(path[0].key))
    assert name.endswith("['kernel']") and "channel_attention" not in name, name
    # w / sqrt(std / reference) has std sqrt(std * reference).
    np.testing.assert_allclose(after.std(), np.sqrt(before.std() * reference), rtol=1e-4)
  assert changed == {"encoder", "decoder", "spectral_encoder", "spectral_decoder"}


def test_the_spectral_branch_adds_to_the_waveform_branchs_stems(hybrid):
  params, apply = hybrid
  mixture = np.random.default_rng(0).normal(size=(1, 320, 2)).astype(np.float32) * 0.1
  # Zeroing the spectral decoder's output block (conv -> GLU) silences the
  # branch's stems; its encoder still feeds the bottleneck.
  silent = _without_output_block(params, "spectral_decoder")
  with_branch = np.asarray(apply({"params": params}, mixture))
  without = np.asarray(apply({"params": silent}, mixture))
  assert np.abs(with_branch - without).max() > 1e-4


def test_masked_mixture_splits_each_bin_among_the_sources_with_its_phase():
  rng = np.random.default_rng(0)
  cac = rng.normal(size=(2, 5, 8, 4)).astype(np.float32)          # 2 channels x re/im
  logits = 3 * rng.normal(size=(2, 5, 8, 3 * 2)).astype(np.float32)
  stems = np.asarray(spectral.masked_mixture(logits, cac, num_sources=3))
  assert stems.shape == (2, 5, 8, 3 * 2 * 2)
  per_source = stems.reshape(2, 5, 8, 3, 4)                       # (..., S, C * 2)
  np.testing.assert_allclose(per_source.sum(axis=3), cac, rtol=1e-5, atol=1e-6)
  # Each source is the mixture's bin scaled by one mask in [0, 1] per channel,
  # the softmax over the sources of that channel's logits.
  masks = np.exp(logits.reshape(2, 5, 8, 3, 2))
  masks /= masks.sum(axis=3, keepdims=True)
  expected = masks[..., None] * cac.reshape(2, 5, 8, 1, 2, 2)
  np.testing.assert_allclose(per_source, expected.reshape(2, 5, 8, 3, 4), rtol=1e-5, atol=1e-6)


def test_a_masking_spectral_branch_alone_writes_stems_that_sum_to_the_mixture(tiny_config):
  model = build_model({**tiny_config.model, "spectral_channels": (4, 8), "spectral_mask": True})
  params = jax.jit(lambda key: init_params(model, key))(jax.random.key(0))
  # The output block writes one mask logit per source and audio channel.
  assert params["spectral_decoder"]["block_0"]["conv"]["kernel"].shape[-1] == 2 * 4 * 2
  # Silence the waveform branch's stems: what is left is the masked mixture.
  silent = _without_output_block(params, "decoder")
  t = np.arange(320)
  # Zero-mean tones well below Nyquist (the input normalisation adds the
  # mean back to every stem; the branch drops the Nyquist bin).
  mixture = np.stack([np.sin(2 * np.pi * t / 16), 0.5 * np.cos(2 * np.pi * t / 10)], -1)
  mixture = (mixture - mixture.mean())[None].astype(np.float32)   # (1, time, 2)
  stems = np.asarray(jax.jit(model.apply)({"params": silent}, mixture))   # (1, 4, time, 2)
  assert np.abs(stems).max() > 0.05
  # Exact but for the last two hops of 16 samples (the dropped last frame).
  inside = slice(0, 320 - 32)
  np.testing.assert_allclose(stems.sum(axis=1)[0, inside], mixture[0, inside], atol=2e-3)


def test_time_context_reaches_its_receptive_field_and_follows_a_shift():
  # Two layers, dilations 1 and 2: frame t sees frames t - 3 ... t + 3 alone.
  block = spectral.TimeContext(layers=2, layer_scale_init=1.0)
  impulse = np.zeros((1, 16, 3, 8), np.float32)
  impulse[0, 8, 1] = 1.0
  params = block.init(jax.random.key(0), impulse)
  moved = np.abs(np.asarray(block.apply(params, impulse)) - impulse).max(axis=(0, 2, 3))
  assert np.all(moved[5:12] > 0) and np.all(moved[:5] == 0) and np.all(moved[12:] == 0)
  # Away from the edges a shift of the input by one frame shifts the output.
  x = np.random.default_rng(0).normal(size=(1, 16, 3, 8)).astype(np.float32)
  out, out_shifted = (np.asarray(block.apply(params, a)) for a in (x, np.roll(x, 1, axis=1)))
  np.testing.assert_allclose(out_shifted[:, 4:13], out[:, 3:12], atol=1e-5)


def test_the_frequency_embedding_starts_smooth_and_tells_the_bins_apart():
  embedding = spectral.FrequencyEmbedding(weight=0.2, scale=10.0)
  x = np.zeros((2, 3, 512, 8), np.float32)
  params = embedding.init(jax.random.key(0), x)["params"]
  table = np.asarray(params["embedding"]) * 10.0           # as read: (bins, channels)
  assert table.shape == (512, 8)
  assert 0.5 < table.std() < 2.0                            # unit variance per row
  neighbours = np.corrcoef(table[1:].ravel(), table[:-1].ravel())[0, 1]
  assert neighbours > 0.9                                   # smooth along frequency
  out = np.asarray(embedding.apply({"params": params}, x + 1.0))
  # The same vector is added at every frame and batch item, a different one per bin.
  np.testing.assert_allclose(out, np.broadcast_to(1.0 + 0.2 * table, out.shape), rtol=1e-5, atol=1e-6)
  assert np.abs(out[0, 0, 0] - out[0, 0, -1]).max() > 0.1


def test_spectral_channels_must_match_the_waveform_blocks(tiny_config):
  model = build_model({**tiny_config.model, "spectral_channels": (4,)})
  with pytest.raises(ValueError, match="one width per waveform block"):
    init_params(model, jax.random.key(0))
