"""The ``attnsep`` command family: ``attnsep <verb> [options]``.

Each verb is a ``main(argv=None) -> int`` in its own module, imported only
when it runs, so ``attnsep --help`` is instant and never imports JAX.  Every
verb reports bad input the same way: one line on stderr,
``attnsep <verb>: error: <message>``, and exit status 1 (``fail``);
argparse's own usage errors keep their exit status 2.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Sequence

PROG = "attnsep"

# verb -> ("module:function", what it does).  The order is the help's order.
VERBS = {
    "train": ("attnsep_jax.cli.train:main",
              "train a separator from a config; resumes from the workdir's checkpoints"),
    "evaluate": ("attnsep_jax.evaluate_cli:main",
                 "score a checkpoint or export with BSS Eval v4 on MUSDB18 or the corpus"),
    "compare": ("attnsep_jax.compare:main",
                "compare evaluations per song: paired differences with bootstrap intervals"),
    "separate": ("attnsep_jax.separate:main",
                 "separate songs, folders or globs into stems"),
    "export": ("attnsep_jax.export:main",
               "write the inference-only model (parameters + config) of a workdir"),
    "ablate": ("attnsep_jax.ablate.cli:main",
               "train, score and tabulate ablations against a base config"),
    "corpus": ("attnsep_jax.corpus.__main__:main",
               "generate the built-in multitrack corpus in MUSDB18-HQ layout"),
    "serve": ("attnsep_jax.web.server:main",
              "serve the local web page that separates uploaded songs"),
    "summary": ("attnsep_jax.summary:main",
                "parameters and shapes of the model a config builds"),
}


def fail(verb: str, error: BaseException | str) -> int:
  """Prints a command's one-line error and returns its exit status.

  Args:
    verb: the command ("train"); "" for the dispatcher itself.
    error: the exception or message; a multi-line one is joined with "; ".
  """
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  prog = f"{PROG} {verb}" if verb else PROG
  print(f"{prog}: error: {'; '.join(lines) or type(error).__name__}", file=sys.stderr)
  return 1


def prog(verb: str) -> str:
  """The ``prog`` of a verb's argparse parser: its usage reads ``attnsep <verb>``."""
  return f"{PROG} {verb}"


def usage() -> str:
  width = max(map(len, VERBS))
  lines = [f"usage: {PROG} <command> [options]", "",
           "Music source separation in JAX/Flax.", "", "commands:"]
  lines += [f"  {verb:<{width}}  {text}" for verb, (_, text) in VERBS.items()]
  lines += ["", f"'{PROG} <command> --help' shows the options of a command."]
  return "\n".join(lines)


def load(verb: str) -> Callable[[Sequence[str]], int]:
  """The ``main`` of ``verb``, imported now.

  Raises:
    ModuleNotFoundError: a third-party module the command needs is missing.
  """
  module_name, function = VERBS[verb][0].split(":")
  return getattr(importlib.import_module(module_name), function)


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help"):
    print(usage(), file=sys.stdout if argv else sys.stderr)
    return 0 if argv else 2
  if argv[0] == "--version":
    from attnsep_jax import __version__
    print(f"{PROG} {__version__}")
    return 0
  verb, rest = argv[0], argv[1:]
  if verb not in VERBS:
    print(f"{PROG}: error: unknown command {verb!r}; choose from {', '.join(VERBS)}",
          file=sys.stderr)
    return 2
  from attnsep_jax import heap
  heap.keep_freed_memory()   # before any verb starts JAX's threads
  try:
    command = load(verb)
  except ModuleNotFoundError as e:
    if (e.name or "").split(".")[0] == "attnsep_jax":
      raise   # a packaging bug, not the user's input: keep the traceback
    return fail(verb, f"this command needs the Python module {e.name!r}, which is not "
                "installed (scripts/setup.sh installs every dependency)")
  return command(rest) or 0
