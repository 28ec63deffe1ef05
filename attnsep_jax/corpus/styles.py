"""The musical vocabulary of the built-in corpus: keys, progressions, drum
patterns and, per style, tempi, kits, bass figures and instruments (General
MIDI program numbers, 0-based)."""

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Progressions as 0-based scale degrees, one chord per bar.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 3), (5, 3, 0, 4), (0, 5, 3, 4), (1, 4, 0, 0),
              (0, 3, 0, 4), (3, 0, 4, 5)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4),
              (0, 2, 6, 3)),
}

# GM drum keys.
KICK, SNARE, SIDESTICK, CLAP, HAT, PEDAL_HAT, OPEN_HAT = 36, 38, 37, 39, 42, 44, 46
CRASH, RIDE, TAMBOURINE, COWBELL, SHAKER = 49, 51, 54, 56, 70
TOMS = (50, 48, 47, 45, 43, 41)

# 16-step drum patterns per style: x = hit, g = ghost note, o = accent.
DRUMS = {
    "rock": [{KICK: "x.......x.x.....", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
             {KICK: "x......x..x.....", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
             {KICK: "x.x.....x.x.....", SNARE: "....x.......x...", RIDE: "x.x.x.x.x.x.x.x."}],
    "pop": [{KICK: "x.....x...x.....", SNARE: "....x.......x...", HAT: "xgxgxgxgxgxgxgxg"},
            {KICK: "x.......x.....x.", CLAP: "....x.......x...", HAT: "..x...x...x...x.",
             SHAKER: "xxxxxxxxxxxxxxxx"},
            {KICK: "x..x....x.......", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x.",
             TAMBOURINE: "....x.......x..."}],
    "funk": [{KICK: "x..x......x..x..", SNARE: "....x..g.g..x..g", HAT: "xgxgxgxgxgxgxgxg"},
             {KICK: "x.x....x..x.....", SNARE: "....x.g.....x.g.", HAT: "xxxxxxxxxxxxxxox",
              COWBELL: "x.......x......."},
             {KICK: "x......x.x....x.", SNARE: "..g.x..g.g..x...", HAT: "x.x.x.x.x.x.x.o."}],
    "ballad": [{KICK: "x.......x.......", SIDESTICK: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
               {KICK: "x..........x....", SNARE: "........x.......", HAT: "x...x...x...x..."},
               {KICK: "x.......x.x.....", SNARE: "....x.......x...", RIDE: "x...x...x...x..."}],
    "electronic": [{KICK: "x...x...x...x...", CLAP: "....x.......x...", OPEN_HAT: "..x...x...x...x.",
                    HAT: "xxxxxxxxxxxxxxxx"},
                   {KICK: "x...x...x...x..x", SNARE: "....x.......x...", HAT: "..x...x...x...x."},
                   {KICK: "x..x..x...x.....", CLAP: "....x.......x...", HAT: "x.xxx.xxx.xxx.xx"}],
    "shuffle": [{KICK: "x.......x.x.....", SNARE: "....x.......x...", RIDE: "x.xxx.xxx.xxx.xx"},
                {KICK: "x.....x.x.......", SNARE: "....x..g....x..g", HAT: "x.x.x.x.x.x.x.x.",
                 PEDAL_HAT: "....x.......x..."}],
}

# Per style: tempo range (bpm), swing of the off-beat 8ths (fraction of a
# 16th), drum kits (bank-128 presets), bass programs and figures,
# accompaniment (program, role) choices, lead programs, modes.
STYLES = {
    "rock": dict(tempo=(100, 160), swing=0.0, kits=(0, 16, 8), modes=("major", "minor"),
                 bass=(34, 33, 35), bass_figures=("eighths", "follow_kick"),
                 other=((30, "power"), (29, "power"), (27, "strum"), (16, "pad"), (0, "block"),
                        (48, "pad"), (61, "stabs")),
                 lead=(85, 53, 54, 52, 65, 81)),
    "pop": dict(tempo=(90, 130), swing=0.0, kits=(0, 8, 24), modes=("major", "major", "minor"),
                bass=(33, 38, 34, 35), bass_figures=("root_fifth", "follow_kick", "eighths"),
                other=((0, "arp"), (1, "block"), (4, "block"), (27, "strum"), (25, "strum"),
                       (48, "pad"), (89, "pad"), (50, "pad"), (11, "arp")),
                lead=(85, 53, 54, 52, 73, 85)),
    "funk": dict(tempo=(92, 122), swing=0.12, kits=(0, 8), modes=("minor", "major"),
                 bass=(36, 37, 33, 38), bass_figures=("sync16",),
                 other=((28, "skank"), (7, "skank"), (61, "stabs"), (4, "block"), (62, "stabs"),
                        (17, "pad")),
                 lead=(66, 65, 85, 53, 56)),
    "ballad": dict(tempo=(66, 92), swing=0.0, kits=(0, 40, 32), modes=("major", "minor"),
                   bass=(32, 33, 35), bass_figures=("whole", "root_fifth"),
                   other=((0, "arp"), (24, "arp"), (48, "pad"), (49, "pad"), (89, "pad"),
                          (46, "arp"), (0, "block")),
                   lead=(52, 53, 85, 73, 71, 54)),
    "electronic": dict(tempo=(118, 150), swing=0.0, kits=(24, 25), modes=("minor", "minor", "major"),
                       bass=(38, 39, 87, 81), bass_figures=("offbeat", "follow_kick", "eighths"),
                       other=((81, "arp"), (80, "arp"), (89, "pad"), (90, "pad"), (95, "pad"),
                              (50, "pad"), (62, "stabs"), (98, "arp")),
                       lead=(54, 85, 80, 81, 91, 53)),
    "shuffle": dict(tempo=(80, 130), swing=0.55, kits=(32, 40, 0), modes=("major", "minor"),
                    bass=(32, 33), bass_figures=("walking",),
                    other=((16, "pad"), (17, "comp"), (0, "comp"), (26, "comp"), (4, "comp"),
                           (61, "stabs")),
                    lead=(65, 66, 56, 85, 53, 64)),
}
# Counter-melody instruments for "other" (the lead's register, not its stem).
COUNTER = (73, 71, 56, 65, 40, 81, 80, 22, 68, 11)
VOICE_BACKING = (52, 53, 54, 91)
