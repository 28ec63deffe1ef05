"""The inference options of ``attnsep separate`` and ``attnsep evaluate``.

Each option overrides one field of the checkpoint config's ``inference``
section (docs/inference.md); an option left out keeps the config's value.
"""

from __future__ import annotations

import argparse

# option's dest -> the config.inference field it overrides
FIELDS = {"segment": "segment_seconds", "overlap": "overlap", "shifts": "shifts",
          "batch_size": "batch_size", "soft_mask_power": "soft_mask_power",
          "wiener_iterations": "wiener_iterations"}


def add_arguments(parser: argparse.ArgumentParser):
  """Adds the options as a group of ``parser``; returns the group (for more)."""
  group = parser.add_argument_group("inference (default: the checkpoint config's)")
  group.add_argument("--segment", type=float, metavar="SECONDS",
                     help="length of the chunks fed to the model")
  group.add_argument("--overlap", type=float, help="overlap of chunks, in [0, 1)")
  group.add_argument("--shifts", type=int, help="random-shift passes to average")
  group.add_argument("--batch-size", type=int, help="chunks per model call")
  group.add_argument("--soft-mask-power", type=float, metavar="P",
                     help="re-estimate the stems as ratio masks |S|^P of the mixture's "
                          "STFT (1: magnitude ratio); 0: the network's stems as they are")
  group.add_argument("--wiener-iterations", type=int, metavar="N",
                     help="refine the soft-masked stems with N iterations of the "
                          "multichannel Wiener filter (Open-Unmix's); 0: none")
  return group


def overrides(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
  """The ``config.inference`` fields the options set; a bad value is a usage error."""
  if args.overlap is not None and not 0 <= args.overlap < 1:
    parser.error("--overlap must be in [0, 1)")
  for dest in ("segment", "batch_size"):
    if getattr(args, dest) is not None and not getattr(args, dest) > 0:
      parser.error(f"--{dest.replace('_', '-')} must be positive")
  for dest in ("shifts", "soft_mask_power", "wiener_iterations"):
    if getattr(args, dest) is not None and not getattr(args, dest) >= 0:
      parser.error(f"--{dest.replace('_', '-')} must be 0 or more")
  return {field: getattr(args, dest) for dest, field in FIELDS.items()
          if getattr(args, dest) is not None}
