"""``attnsep corpus --out data/synth``: generate the built-in multitrack corpus.

Also ``python -m attnsep_jax.corpus``.  See docs/data.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from attnsep_jax import cli

VERB = "corpus"


def build_parser() -> argparse.ArgumentParser:
  from attnsep_jax.corpus.render import FLUID_R3
  parser = argparse.ArgumentParser(
      prog=cli.prog(VERB),
      description="Generate the built-in multitrack corpus in MUSDB18-HQ layout.")
  parser.add_argument("--out", required=True, help="corpus folder to create (e.g. data/synth)")
  parser.add_argument("--tracks", type=int, default=12,
                      help="tracks in the train subset, validation included (default 12)")
  parser.add_argument("--test-tracks", type=int, default=None,
                      help="tracks in the test subset (default: tracks // 3, at least 1)")
  parser.add_argument("--valid-tracks", type=int, default=None,
                      help="train tracks listed for validation (default: tracks // 6, at least 1)")
  parser.add_argument("--seconds", type=float, default=20.0, help="length of each track (s)")
  parser.add_argument("--seed", type=int, default=0, help="selects every song (default 0)")
  parser.add_argument("--soundfont", nargs="+", action="extend", default=None,
                      help="one or more .sf2/.sf3 files; with several, each stem of each "
                           "track is rendered with one of them, drawn at random (default: "
                           "pretty_midi's TimGM6mb.sf2; Debian's fluid-soundfont-gm "
                           f"installs {FLUID_R3})")
  parser.add_argument("--subtype", default="PCM_16", choices=("PCM_16", "FLOAT"),
                      help="wav sample format (default PCM_16, as MUSDB18-HQ)")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="parallel processes (default: CPU count)")
  parser.add_argument("--force", action="store_true",
                      help="replace an existing corpus in --out")
  return parser


def print_summary(meta: dict) -> None:
  from attnsep_jax.corpus.write import soundfont_names
  tracks = meta["tracks"]
  audio_s = len(tracks) * meta["seconds"]
  styles = sorted({t["style"] for t in tracks})
  size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(meta["root"]) for f in fs)
  print(f"wrote {len(tracks)} tracks ({audio_s:.0f} s of audio; "
        f"{sum(t['subset'] == 'train' for t in tracks)} train incl. "
        f"{len(meta['validation_tracks'])} valid, "
        f"{sum(t['subset'] == 'test' for t in tracks)} test) to {meta['root']}")
  print(f"styles: {', '.join(styles)}; soundfonts: {', '.join(soundfont_names(meta))}; "
        f"{size / 2**20:.1f} MiB; {meta['wall_seconds']:.1f} s wall, "
        f"{audio_s / max(meta['cpu_seconds'], 1e-9):.0f} s of audio per CPU-second")


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  from attnsep_jax.corpus.write import generate_corpus
  test_tracks = max(1, args.tracks // 3) if args.test_tracks is None else args.test_tracks
  try:
    meta = generate_corpus(args.out, args.tracks, test_tracks, args.valid_tracks, args.seconds,
                           args.seed, args.soundfont, subtype=args.subtype,
                           workers=args.workers, force=args.force,
                           progress=sys.stderr.isatty())
  except (OSError, ValueError, ImportError, RuntimeError) as e:
    # Bad arguments, a missing renderer, a failed write (WriteError) or a
    # seed with no complete song: each is one line, never a traceback.
    return cli.fail(VERB, e)
  print_summary(meta)
  return 0


if __name__ == "__main__":
  sys.exit(main())
