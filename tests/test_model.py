"""The separation network: shapes, gradients, segmentation, ablations, tracing."""

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnsep_jax import SOURCES, masking
from attnsep_jax.config import apply_overrides, load_ablation, load_config
from attnsep_jax.losses import separation_loss
from attnsep_jax.models.dual_path import overlap_add, segment
from attnsep_jax.models.network import abstract_params, build_model, count_params


def _keys(tree):
  return {"/".join(str(getattr(k, "key", k)) for k in path)
          for path, _ in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("batch,time", [(1, 1), (2, 37), (1, 4096 + 3), (3, 1000)])
def test_output_shape_any_length(tiny_config, batch, time):
  model = build_model(tiny_config.model)
  params = abstract_params(model)
  mixture = jax.ShapeDtypeStruct((batch, time, 2), jnp.float32)
  stems = jax.eval_shape(lambda p, x: model.apply({"params": p}, x), params, mixture)
  assert stems.shape == (batch, len(SOURCES), time, 2)


def test_apply_runs_and_trims(tiny_model_and_params):
  model, params = tiny_model_and_params
  rng = np.random.default_rng(0)
  for time in (333, 800):  # neither is a multiple of the total stride (16)
    mixture = rng.normal(size=(2, time, 2)).astype(np.float32) * 0.1
    stems = model.apply({"params": params}, mixture)
    assert stems.shape == (2, 4, time, 2)
    assert np.all(np.isfinite(np.asarray(stems)))


@pytest.mark.parametrize("shape", [(1, 100), (1, 100, 1), (1, 100, 3), (100, 2, 1)])
def test_wrong_channels_is_a_clear_error(tiny_model_and_params, shape):
  model, params = tiny_model_and_params
  with pytest.raises(ValueError, match="mixture of shape"):
    model.apply({"params": params}, jnp.zeros(shape))


def test_empty_input_is_a_clear_error(tiny_model_and_params):
  model, params = tiny_model_and_params
  with pytest.raises(ValueError, match="empty"):
    model.apply({"params": params}, jnp.zeros((1, 0, 2)))


def test_silence_gives_finite_output(tiny_model_and_params):
  model, params = tiny_model_and_params
  stems = model.apply({"params": params}, jnp.zeros((1, 160, 2)))
  assert np.all(np.isfinite(np.asarray(stems)))


def test_loudness_invariance(tiny_model_and_params):
  """Input normalisation makes the output scale with the input."""
  model, params = tiny_model_and_params
  mixture = np.random.default_rng(1).normal(size=(1, 320, 2)).astype(np.float32)
  quiet = np.asarray(model.apply({"params": params}, 0.01 * mixture))
  loud = np.asarray(model.apply({"params": params}, mixture))
  np.testing.assert_allclose(100 * quiet, loud, rtol=2e-3, atol=2e-4)


def test_mixture_consistency_makes_the_stems_sum_to_the_mixture(tiny_config,
                                                                tiny_model_and_params):
  _, params = tiny_model_and_params
  unconstrained = build_model({**tiny_config.model, "mixture_consistency": False})
  consistent = build_model({**tiny_config.model, "mixture_consistency": True})
  mixture = np.random.default_rng(2).normal(size=(2, 320, 2)).astype(np.float32)
  plain = np.asarray(unconstrained.apply({"params": params}, mixture))
  stems = np.asarray(consistent.apply({"params": params}, mixture))   # the same parameters
  np.testing.assert_allclose(stems.sum(axis=1), mixture, atol=1e-5)
  assert np.abs(plain.sum(axis=1) - mixture).max() > 1e-2   # not true without it
  np.testing.assert_allclose(stems - plain, np.broadcast_to(
      (mixture - plain.sum(axis=1))[:, None] / 4, plain.shape), atol=1e-5)


def test_soft_mask_inside_the_network_is_the_post_filter_and_trains(tiny_config,
                                                                   tiny_model_and_params):
  _, params = tiny_model_and_params
  plain_model = build_model(tiny_config.model)
  masked_model = build_model({**tiny_config.model, "soft_mask_power": 1.0,
                              "soft_mask_fft_size": 256})
  rng = np.random.default_rng(3)
  mixture = rng.normal(size=(2, 700, 2)).astype(np.float32)
  # Jitted: eager flax apply is several times slower on a CPU.
  plain = jax.jit(plain_model.apply)({"params": params}, mixture)
  stems = np.asarray(jax.jit(masked_model.apply)({"params": params}, mixture))   # same parameters
  np.testing.assert_allclose(stems, masking.soft_mask(mixture, plain, 1.0, 256), atol=1e-6)
  np.testing.assert_allclose(stems.sum(axis=1), mixture, atol=1e-4)
  assert np.abs(stems - np.asarray(plain)).max() > 1e-2

  sources = rng.normal(size=(2, 4, 700, 2)).astype(np.float32) * 0.25
  grads = jax.jit(jax.grad(lambda p: separation_loss(
      sources, masked_model.apply({"params": p}, mixture), kind="l1")[0]))(params)
  leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(grads)]
  assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
  assert all(np.any(leaf != 0) for leaf in leaves)


def test_gradients_finite_and_nonzero_for_every_leaf(tiny_config, tiny_model_and_params):
  model, params = tiny_model_and_params
  rng = np.random.default_rng(2)
  mixture = rng.normal(size=(2, 320, 2)).astype(np.float32) * 0.1
  sources = rng.normal(size=(2, 4, 320, 2)).astype(np.float32) * 0.05

  def loss_fn(p):
    return separation_loss(sources, model.apply({"params": p}, mixture),
                           **tiny_config.loss)[0]

  grads = jax.grad(loss_fn)(params)
  for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
    leaf = np.asarray(leaf)
    assert np.all(np.isfinite(leaf)), path
    assert np.any(leaf != 0), f"zero gradient for {jax.tree_util.keystr(path)}"


@pytest.mark.parametrize("frames,chunk,hop", [
    (1, 4, 2), (7, 4, 2), (16, 4, 2), (50, 16, 8), (33, 8, 2), (10, 3, 1), (5, 6, 6)])
def test_overlap_add_inverts_segment_exactly(frames, chunk, hop):
  x = jnp.asarray(np.random.default_rng(frames).normal(size=(2, frames, 5)), jnp.float32)
  chunks = segment(x, chunk, hop)
  assert chunks.shape[2] == chunk
  # Every real frame appears in exactly chunk/hop chunks.
  ones = segment(jnp.ones((1, frames, 1)), chunk, hop)
  assert float(ones.sum()) == frames * chunk // hop
  restored = overlap_add(chunks, frames, hop)
  if (chunk // hop) & (chunk // hop - 1) == 0:  # power of two: division is exact
    np.testing.assert_array_equal(np.asarray(restored), np.asarray(x))
  else:
    np.testing.assert_allclose(np.asarray(restored), np.asarray(x), rtol=1e-6)


def test_segment_rejects_hop_not_dividing_chunk():
  with pytest.raises(ValueError, match="multiple of hop_frames"):
    segment(jnp.zeros((1, 10, 2)), 5, 2)


def test_apply_does_not_retrace(tiny_model_and_params):
  model, params = tiny_model_and_params
  traces = []

  @jax.jit
  def forward(p, x):
    traces.append(1)
    return model.apply({"params": p}, x)

  x = jnp.zeros((1, 160, 2))
  forward(params, x).block_until_ready()
  forward(params, x + 1.0).block_until_ready()
  assert len(traces) == 1


ABLATIONS = sorted(glob.glob(os.path.join(
    os.path.dirname(__file__), "..", "configs", "ablations", "*.py")))


def test_every_ablation_is_tested():
  assert len(ABLATIONS) >= 9


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: os.path.basename(p)[:-3])
def test_ablation_changes_what_it_says(path, tiny_config):
  """Each ablation, applied to the tiny base, builds, applies, and differs as named."""
  base = tiny_config
  variant = load_ablation(path)(apply_overrides(base, []))
  name = os.path.basename(path)[:-3]
  base_keys = _keys(abstract_params(build_model(base.model)))
  model = build_model(variant.model)
  params = abstract_params(model)
  keys = _keys(params)
  stems = jax.eval_shape(lambda p, x: model.apply({"params": p}, x), params,
                         jax.ShapeDtypeStruct((1, 100, 2), jnp.float32))
  assert stems.shape == (1, 4, 100, 2)

  has = lambda ks, word: any(word in k for k in ks)
  if name == "no_channel_attention":
    assert has(base_keys, "channel_attention") and not has(keys, "channel_attention")
  elif name == "no_dense_connections":
    assert has(base_keys, "encoder/block_0/transition") and not has(keys, "transition")
    deep = lambda p: p["encoder"]["block_1"]["downsample"]["kernel"].shape[1]
    assert deep(params) == deep(abstract_params(build_model(base.model)))
  elif name == "dense_within_scale":
    assert has(keys, "encoder/block_0/transition")
  elif name == "dense_cross_scale":
    assert not has(keys, "transition")
    deep = lambda p: p["encoder"]["block_1"]["downsample"]["kernel"].shape[1]
    assert deep(params) > deep(abstract_params(build_model(base.model)))
  elif name == "separator_bilstm":
    assert has(keys, "separator/bilstm_1") and not has(keys, "separator/block_0")
  elif name == "separator_none":
    assert not has(keys, "separator")
  elif name == "ffn_linear":
    assert has(base_keys, "ffn_bilstm") and not has(keys, "ffn_bilstm")
    assert has(keys, "ffn_linear")
  elif name == "positional_sinusoidal":
    assert keys == base_keys and variant.model.positional_encoding == "sinusoidal"
  elif name in ("loss_relative_mse", "loss_relative_mse_segment"):
    reduction = "segment" if name.endswith("segment") else "sample"
    assert keys == base_keys and variant.loss.kind == "relative_mse"
    assert variant.loss.reduction == reduction and variant.loss.eps_scale == "absolute"
  elif name.startswith("loss_"):
    assert keys == base_keys and variant.loss.kind == name[len("loss_"):]
  elif name.endswith("mixture_consistency"):
    on = not name.startswith("no_")
    assert keys == base_keys and variant.model.mixture_consistency is on
  elif name.startswith("spectral_"):
    assert has(keys, "spectral_encoder") and not has(base_keys, "spectral_encoder")
    assert has(keys, "spectral_decoder") is (name != "spectral_front_end")
    assert has(keys, "spectral_encoder/time_0") is (name == "spectral_time_context")
    assert has(keys, "spectral_encoder/freq_embedding") is (name == "spectral_freq_embedding")
  elif name == "fewer_blocks":
    assert variant.model.num_dual_path_blocks == max(1, base.model.num_dual_path_blocks // 2)
  else:
    pytest.fail(f"no expectation written for ablation {name}")


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: os.path.basename(p)[:-3])
def test_ablation_files_derive_from_paper(path, repo_root):
  """Each file's get_config() is the paper with its override, and the
  override changes the paper or the small recipe (some set the paper's own
  choice, for studies on cpu_small)."""
  paper = load_config(os.path.join(repo_root, "configs", "paper.py"))
  small = load_config(os.path.join(repo_root, "configs", "cpu_small.py"))
  variant = load_config(path)
  assert variant.model.channels == paper.model.channels
  override = load_ablation(path)
  assert variant.to_dict() == override(apply_overrides(paper, [])).to_dict()
  assert (variant.to_dict() != paper.to_dict()
          or override(apply_overrides(small, [])).to_dict() != small.to_dict())


def test_positional_encoding_changes_output(tiny_config, tiny_model_and_params):
  model, params = tiny_model_and_params
  variant = apply_overrides(tiny_config, ["model.positional_encoding='sinusoidal'"])
  other = build_model(variant.model)
  x = np.random.default_rng(3).normal(size=(1, 320, 2)).astype(np.float32)
  a = np.asarray(model.apply({"params": params}, x))
  b = np.asarray(other.apply({"params": params}, x))
  assert not np.allclose(a, b)


def test_paper_parameter_count_matches_docs(repo_root):
  model = build_model(load_config(os.path.join(repo_root, "configs", "paper.py")).model)
  total = count_params(abstract_params(model))
  with open(os.path.join(repo_root, "docs", "architecture.md")) as f:
    assert f"{total:,}" in f.read(), "docs/architecture.md states a stale parameter count"


def test_fast_convolutions_match_flax_reference():
  """layers.py's depthwise and transposed convs equal the lax convolutions."""
  import flax.linen as nn
  from attnsep_jax.models.layers import DepthwiseConv1d, TransposedConv1d
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 37, 6)), jnp.float32)
  for kernel_size in (3, 4, 5):
    ours = DepthwiseConv1d(kernel_size)
    params = ours.init(jax.random.key(0), x)
    reference = nn.Conv(6, (kernel_size,), padding="SAME", feature_group_count=6)
    np.testing.assert_allclose(ours.apply(params, x), reference.apply(params, x),
                               rtol=1e-5, atol=1e-5)
  for kernel_size, stride in ((8, 4), (6, 4), (3, 1), (5, 2)):
    ours = TransposedConv1d(5, kernel_size, stride)
    params = ours.init(jax.random.key(1), x)
    # flax's ConvTranspose (transpose_kernel=False) applies the kernel flipped.
    flipped = jax.tree_util.tree_map(lambda a: a, params)
    flipped["params"]["kernel"] = params["params"]["kernel"][::-1]
    reference = nn.ConvTranspose(5, (kernel_size,), strides=(stride,), padding="VALID")
    expected = reference.apply(flipped, x)
    got = ours.apply(params, x)
    assert got.shape == expected.shape == (2, 36 * stride + kernel_size, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_output(tiny_config):
  config = apply_overrides(tiny_config, ["model.dtype='bfloat16'"])
  model = build_model(config.model)
  params = abstract_params(model)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(params))
  stems = jax.eval_shape(lambda p, x: model.apply({"params": p}, x), params,
                         jax.ShapeDtypeStruct((1, 100, 2), jnp.float32))
  assert stems.dtype == jnp.float32 and stems.shape == (1, 4, 100, 2)


def test_remat_separator_gives_the_same_gradients(tiny_config, tiny_model_and_params):
  model, params = tiny_model_and_params
  remat = build_model(apply_overrides(tiny_config, ["model.remat_separator=True"]).model)
  x = np.random.default_rng(5).normal(size=(1, 160, 2)).astype(np.float32)
  grad = lambda m: jax.grad(lambda p: jnp.sum(m.apply({"params": p}, x) ** 2))(params)
  for a, b in zip(jax.tree_util.tree_leaves(grad(model)), jax.tree_util.tree_leaves(grad(remat))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
