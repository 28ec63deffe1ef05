"""The attnsep command family: the dispatcher, its help, and the one error style."""

import importlib
import os
import subprocess
import sys
import tomllib

import pytest

from attnsep_jax import cli


def run(*args, cwd=None):
  return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                        timeout=120)


def test_help_lists_every_verb_without_importing_jax():
  code = ("import sys; from attnsep_jax.cli import main; code = main(['--help']); "
          "assert 'jax' not in sys.modules, 'attnsep --help imported jax'; sys.exit(code)")
  proc = run("-c", code)
  assert proc.returncode == 0, proc.stderr
  listed = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")]
  assert listed == list(cli.VERBS)
  assert proc.stdout.startswith("usage: attnsep <command>")


def test_python_m_attnsep_jax_is_the_dispatcher():
  proc = run("-m", "attnsep_jax", "--help")
  assert proc.returncode == 0 and "summary" in proc.stdout


def test_no_verb_is_a_usage_error(capsys):
  assert cli.main([]) == 2
  assert capsys.readouterr().err.startswith("usage: attnsep <command>")


def test_unknown_verb_is_one_line(capsys):
  assert cli.main(["trian", "--config", "x"]) == 2
  err = capsys.readouterr().err
  assert err == ("attnsep: error: unknown command 'trian'; choose from "
                 + ", ".join(cli.VERBS) + "\n")


def test_verb_help_is_the_verbs_own_parser(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["train", "--help"])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith("usage: attnsep train") and "--workdir" in out


def test_bad_config_is_one_line_with_exit_status_1(tmp_path, capsys):
  missing = str(tmp_path / "absent.py")
  assert cli.main(["train", "--config", missing, "--workdir", str(tmp_path)]) == 1
  assert capsys.readouterr().err == f"attnsep train: error: config file not found: {missing}\n"


def test_bad_override_is_one_line(repo_root, capsys):
  tiny = os.path.join(repo_root, "configs", "tiny.py")
  assert cli.main(["summary", "--config", tiny, "--config.model.nope", "1"]) == 1
  err = capsys.readouterr().err
  assert err.startswith("attnsep summary: error: unknown config field 'model.nope'")
  assert err.count("\n") == 1


def test_fail_joins_a_multi_line_message(capsys):
  assert cli.fail("export", ValueError("first\n  second\n")) == 1
  assert capsys.readouterr().err == "attnsep export: error: first; second\n"


def test_missing_third_party_module_is_one_line(monkeypatch, capsys):
  def load(verb):
    raise ModuleNotFoundError("No module named 'tinysoundfont'", name="tinysoundfont")
  monkeypatch.setattr(cli, "load", load)
  assert cli.main(["corpus", "--out", "x"]) == 1
  err = capsys.readouterr().err
  assert err.startswith("attnsep corpus: error: this command needs the Python module "
                        "'tinysoundfont'") and err.count("\n") == 1


def test_every_verb_names_a_main_and_the_console_script_is_the_dispatcher(repo_root):
  for verb, (target, _) in cli.VERBS.items():
    module, function = target.split(":")
    assert callable(getattr(importlib.import_module(module), function)), verb
  with open(os.path.join(repo_root, "pyproject.toml"), "rb") as f:
    scripts = tomllib.load(f)["project"]["scripts"]
  assert scripts == {"attnsep": "attnsep_jax.cli:main"}


def test_train_py_is_the_train_command(repo_root, tmp_path):
  proc = run("train.py", "--help", cwd=repo_root)
  assert proc.returncode == 0 and "--workdir" in proc.stdout
  missing = str(tmp_path / "absent.py")
  proc = run("train.py", "--config", missing, "--workdir", str(tmp_path), cwd=repo_root)
  assert proc.returncode == 1
  assert proc.stderr == f"attnsep train: error: config file not found: {missing}\n"


@pytest.mark.parametrize("verb", ["separate", "evaluate"])
def test_inference_options_override_the_config_fields_they_name(verb):
  from attnsep_jax.cli import inference_options
  parser = importlib.import_module(cli.VERBS[verb][0].split(":")[0]).build_parser()
  base = ["--checkpoint", "c", "--musdb", "m"] if verb == "evaluate" else ["s", "--checkpoint",
                                                                          "c", "--out", "o"]
  args = parser.parse_args(base + ["--segment", "2.5", "--overlap", "0.5", "--shifts", "0",
                                   "--soft-mask-power", "1", "--wiener-iterations", "1"])
  assert inference_options.overrides(parser, args) == {
      "segment_seconds": 2.5, "overlap": 0.5, "shifts": 0, "soft_mask_power": 1.0,
      "wiener_iterations": 1}
  assert inference_options.overrides(parser, parser.parse_args(base)) == {}


@pytest.mark.parametrize("bad", [["--segment", "0"], ["--overlap", "1"], ["--batch-size", "-1"],
                                 ["--shifts", "-1"], ["--soft-mask-power", "nan"],
                                 ["--wiener-iterations", "-2"]])
def test_bad_inference_option_is_a_usage_error(bad, capsys):
  from attnsep_jax import evaluate_cli
  with pytest.raises(SystemExit) as exit_info:
    evaluate_cli.main(["--checkpoint", "c", "--musdb", "m"] + bad)
  assert exit_info.value.code == 2
  assert f"error: {bad[0]} must be" in capsys.readouterr().err
