"""Tests that would catch a wrong model: references, alignment, shapes, gradients."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from attnsep_jax.config import apply_overrides, load_config
from attnsep_jax.losses import separation_loss
from attnsep_jax.models.dual_path import segment
from attnsep_jax.models.lstm import BiLSTM
from attnsep_jax.models.network import build_model, init_params

GATES = ("i", "f", "g", "o")  # our fused layout's gate order


def flax_lstm_params(ours: dict, hidden: int) -> dict:
  """Our fused BiLSTM's parameters in ``nn.Bidirectional(nn.RNN(nn.LSTMCell))``'s layout.

  Ours: one input Dense to (direction, gate, hidden) with its bias, a
  recurrent kernel (direction, hidden, gate * hidden) and +1 on the forget
  gate; flax: per gate an input kernel, a recurrent kernel and a bias.
  """
  kernel = ours["input"]["kernel"].reshape(-1, 2, 4, hidden)    # (in, dir, gate, h)
  bias = ours["input"]["bias"].reshape(2, 4, hidden)
  recurrent = ours["recurrent_kernel"].reshape(2, hidden, 4, hidden)
  params = {}
  for d, rnn in enumerate(("forward_rnn", "backward_rnn")):
    cell = {}
    for g, gate in enumerate(GATES):
      cell[f"i{gate}"] = {"kernel": kernel[:, d, g]}
      cell[f"h{gate}"] = {"kernel": recurrent[d, :, g],
                          "bias": bias[d, g] + (1.0 if gate == "f" else 0.0)}
    params[rnn] = {"cell": cell}
  return {"params": params}


def test_bilstm_matches_flax_reference_lstm():
  hidden = 5
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 11, 4)), jnp.float32)
  ours = BiLSTM(hidden)
  params = ours.init(jax.random.key(0), x)["params"]
  reference = nn.Bidirectional(nn.RNN(nn.LSTMCell(hidden)), nn.RNN(nn.LSTMCell(hidden)))
  expected = reference.apply(flax_lstm_params(params, hidden), x)
  got = ours.apply({"params": params}, x)
  assert got.shape == expected.shape == (3, 11, 2 * hidden)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def plain_unet(tiny_config):
  """The tiny U-Net without the parts that see the whole excerpt (input
  normalisation, channel attention, the separator) or tie the stems together
  (mixture consistency: the stems' sum is then the mixture itself): a
  convolutional map that must be equivariant to shifts by its total stride."""
  config = apply_overrides(tiny_config, [
      "model.normalize_input=False", "model.channel_attention=False",
      "model.separator='none'", "model.mixture_consistency=False",
      "model.channels=(4, 8, 8)"])
  model = build_model(config.model)
  params = jax.jit(lambda rng: init_params(model, rng))(jax.random.key(1))
  return model, params


def test_unet_is_aligned_with_its_input_under_shifts(plain_unet):
  model, params = plain_unet
  hop = model.total_stride
  x = np.random.default_rng(1).normal(size=(1, 40 * hop, 2)).astype(np.float32)
  shifted = np.roll(x, hop, axis=1)
  out = np.asarray(model.apply({"params": params}, x))
  out_shifted = np.asarray(model.apply({"params": params}, shifted))
  # Away from both ends (the zero padding of the first and last frames), a
  # shift of one hop at the input is the same shift at the output.
  inner = slice(8 * hop, 30 * hop)
  np.testing.assert_allclose(out_shifted[:, :, inner], np.roll(out, hop, axis=2)[:, :, inner],
                             rtol=1e-4, atol=1e-5)


def test_unet_receptive_field_is_centred_on_the_output_sample(plain_unet):
  """An impulse comes out where it went in: the input samples that output
  sample t depends on are centred on t.  With strided levels the centre
  wobbles with t's phase within a hop; over one hop it averages to t exactly,
  so a crop or padding off by one sample anywhere shows up."""
  model, params = plain_unet
  hop = model.total_stride
  x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 32 * hop, 2)), jnp.float32)
  jacobian_row = jax.jit(lambda t: jax.grad(lambda v: jax.lax.dynamic_index_in_dim(
      model.apply({"params": params}, v)[0], t, axis=1, keepdims=False).sum())(x))
  offsets = []
  for t in range(16 * hop, 17 * hop):
    support = np.flatnonzero(np.abs(np.asarray(jacobian_row(t))).sum(axis=(0, 2)) > 0)
    assert support[0] < t < support[-1]
    offsets.append((support[0] + support[-1]) / 2 - t)
  assert abs(np.mean(offsets)) <= 0.25, np.mean(offsets)
  assert np.max(np.abs(offsets)) < hop / 2, offsets


def test_paper_bottleneck_shape_matches_docs(repo_root):
  """10 s at 44.1 kHz -> 108 bottleneck frames of 1024 channels -> 15 chunks of K = 16."""
  config = load_config(os.path.join(repo_root, "configs", "paper.py"))
  model = build_model(config.model)
  time = 10 * config.data.sample_rate
  frames = model.valid_length(time) // model.total_stride
  features = jax.ShapeDtypeStruct((1, frames, model.separator_dim), jnp.float32)
  chunks = jax.eval_shape(lambda h: segment(h, model.chunk_frames, model.hop_frames), features)
  assert (frames, model.channels[-1]) == (108, 1024)
  assert chunks.shape == (1, 15, 16, model.separator_dim)
  with open(os.path.join(repo_root, "docs", "architecture.md")) as f:
    docs = f.read()
  assert f"{frames} frames of {model.channels[-1]}" in docs
  assert f"{chunks.shape[1]} chunks of K = {chunks.shape[2]}" in docs


LOSS_SETTINGS = [
    dict(kind="l1"), dict(kind="mse"),
    dict(kind="relative_mse", eps=1e-3),
    dict(kind="relative_mse", reduction="segment", eps=1e-3),
    dict(kind="relative_mse", reduction="segment", eps_scale="mixture_rms", eps=0.05),
    dict(kind="relative_mse", eps_scale="mixture_rms", eps=0.1),
    dict(kind="sdr", sdr_frame_samples=8),
]


@pytest.mark.parametrize("settings", LOSS_SETTINGS, ids=lambda s: "-".join(map(str, s.values())))
def test_loss_gradients_match_finite_differences(settings):
  rng = np.random.default_rng(3)
  target = jnp.asarray(rng.normal(size=(2, 4, 16, 2)) * 0.3, jnp.float32)
  # Away from |x - x̂| = 0 and x̂ = 0, where L1 and |.| have kinks.
  estimate = target + jnp.asarray(0.2 + 0.3 * rng.random((2, 4, 16, 2)), jnp.float32) * np.sign(
      rng.normal(size=(2, 4, 16, 2)))
  loss = lambda e: separation_loss(target, e, **settings)[0]
  check_grads(loss, (estimate,), order=1, modes=("rev",), atol=2e-2, rtol=2e-2, eps=1e-3)


def test_segment_relative_mse_reads_the_paper_formula_on_norms():
  target = np.zeros((1, 4, 8, 2), np.float32)
  target[0, :, :, 0] = 1.0                              # RMS of each stem: sqrt(1/2)
  estimate = 0.5 * target                              # error RMS: 0.5 sqrt(1/2)
  _, per_source = separation_loss(target, estimate, reduction="segment", eps=0.0)
  # (0.5 a / (a + 0.5 a))² = 1/9 whatever a is: relative to the stem's level.
  np.testing.assert_allclose(per_source, np.full(4, 1 / 9), rtol=1e-5)


def test_l1_warmup_switches_the_loss_at_its_step():
  target = np.ones((1, 4, 8, 2), np.float32)
  estimate = np.zeros_like(target)
  settings = dict(kind="relative_mse", l1_warmup_steps=10)
  early, _ = separation_loss(target, estimate, **settings, step=jnp.asarray(9))
  late, _ = separation_loss(target, estimate, **settings, step=jnp.asarray(10))
  assert float(early) == pytest.approx(1.0)                 # L1 of ones vs zeros
  assert float(late) == pytest.approx(1.0 / (1.0 + 1e-3) ** 2)  # relative MSE
