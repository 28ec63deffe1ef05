"""Config files, overrides and their error messages."""

import os

import pytest

from attnsep_jax.config import (ConfigError, apply_overrides, from_json, load_config,
                                parse_args, to_json)


def test_paper_config_is_the_paper(repo_root):
  config = load_config(os.path.join(repo_root, "configs", "paper.py"))
  assert config.model.channels == (32, 64, 128, 256, 512, 1024)
  assert config.model.separator == "dual_path"
  assert config.model.ffn == "bilstm"
  assert config.model.positional_encoding == "none"
  assert config.loss.kind == "relative_mse"


def test_overrides_parse_types(repo_root):
  config = load_config(os.path.join(repo_root, "configs", "paper.py"), [
      "model.num_dual_path_blocks=4", "model.channels=(8,16)",
      "model.separator=bilstm", "optim.learning_rate=1", "loss.source_weights=[1,2,3,4]",
      "model.mixture_consistency=true", "model.channel_attention=false"])
  assert config.model.num_dual_path_blocks == 4
  assert config.model.channels == (8, 16)
  assert config.model.separator == "bilstm"
  assert config.optim.learning_rate == 1.0 and isinstance(config.optim.learning_rate, float)
  assert config.loss.source_weights == (1, 2, 3, 4)
  assert config.model.mixture_consistency is True and config.model.channel_attention is False


@pytest.mark.parametrize("override,message", [
    ("model.nope=1", "unknown config field"),
    ("nosection.x=1", "unknown config section"),
    ("model.num_heads", "key.path=value"),
    ("model.num_heads='eight'", "bad type"),
])
def test_bad_overrides(repo_root, override, message):
  with pytest.raises(ConfigError, match=message):
    load_config(os.path.join(repo_root, "configs", "paper.py"), [override])


def test_missing_config_file():
  with pytest.raises(ConfigError, match="not found"):
    load_config("/nonexistent/config.py")


def test_parse_args_splits_overrides(repo_root):
  import argparse
  parser = argparse.ArgumentParser()
  parser.add_argument("--config")
  parser.add_argument("--workdir")
  args, config = parse_args(parser, [
      "--config", os.path.join(repo_root, "configs", "tiny.py"),
      "--config.model.num_heads=1", "--workdir", "w", "--config.seed", "7"])
  assert args.workdir == "w"
  assert config.model.num_heads == 1 and config.seed == 7


def test_json_round_trip(repo_root):
  config = load_config(os.path.join(repo_root, "configs", "paper.py"))
  assert from_json(to_json(config)).to_dict() == config.to_dict()
  assert apply_overrides(config, []).to_dict() == config.to_dict()


def test_parse_args_raises_config_errors_and_exits_on_usage_errors(repo_root, capsys):
  import argparse
  parser = argparse.ArgumentParser()
  parser.add_argument("--config")
  tiny = os.path.join(repo_root, "configs", "tiny.py")
  with pytest.raises(ConfigError, match="unknown config field 'model.nope'"):
    parse_args(parser, ["--config", tiny, "--config.model.nope=1"])
  with pytest.raises(ConfigError, match="not found"):
    parse_args(parser, ["--config", "/nonexistent/config.py"])
  for argv, message in [(["--config", tiny, "--config.seed"], "--config.seed needs a value"),
                        (["--config.seed=1"], "overrides need --config FILE")]:
    with pytest.raises(SystemExit):
      parse_args(parser, argv)
    assert message in capsys.readouterr().err


def test_hybrid_recipe_is_the_small_one_with_the_measured_spectral_branch(repo_root):
  small = load_config(os.path.join(repo_root, "configs", "cpu_small.py"))
  hybrid = load_config(os.path.join(repo_root, "configs", "cpu_small_hybrid.py"))
  assert hybrid.model.spectral_channels == tuple(c // 2 for c in small.model.channels)
  assert hybrid.model.spectral_output
  hybrid.model.spectral_channels = small.model.spectral_channels
  hybrid.model.spectral_output = small.model.spectral_output
  hybrid.train.num_steps = small.train.num_steps
  assert hybrid.optim.learning_rate > small.optim.learning_rate
  hybrid.optim.learning_rate = small.optim.learning_rate
  assert hybrid.loss.stft_weight > 0 and small.loss.stft_weight == 0
  hybrid.loss.stft_weight = small.loss.stft_weight
  hybrid.loss.stft_fft_sizes = small.loss.stft_fft_sizes
  assert hybrid.to_dict() == small.to_dict()
