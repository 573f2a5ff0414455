#!/usr/bin/env python3
"""Writes the seed corpus of the validator fuzzer (tests/fuzz/corpus/validate/).

Seeds are bursts in validate_diff.h's input format built from the hand-labelled frames of
tests/integration/data/mixed.pcap (every frame shape and every drop reason): each frame alone,
each frame cut short, with checksum hints and longer frame_len, and random bursts of every
group shape (1..64 packets). Deterministic: rerunning it rewrites the same files.
   tests/fuzz/make_corpus.py [OUT_DIR]
"""
import os
import random
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "integration"))
from packets import read_pcap  # noqa: E402


def packet(frame, cut=0, frame_extra_units=None, hint=None):
    flags = 0
    if frame_extra_units is not None:
        flags |= 2 | (frame_extra_units << 2)
    if hint is not None:
        flags = (flags & 0x0F) | 1 | (hint << 4)
    return struct.pack("<HBB", len(frame), cut, flags) + frame


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "validate")
    os.makedirs(out, exist_ok=True)
    frames = read_pcap(os.path.join(here, "..", "integration", "data", "mixed.pcap"))
    rng = random.Random(3)
    seeds = {}
    for i, f in enumerate(frames):
        seeds[f"frame-{i:02d}"] = packet(f)
        seeds[f"frame-{i:02d}-cut"] = packet(f, cut=rng.randrange(1, min(len(f), 255) + 1), hint=rng.randrange(3))
    for n in [1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64]:
        burst = b""
        for _ in range(n):
            f = frames[rng.randrange(len(frames))]
            kind = rng.randrange(6)
            if kind == 0:
                burst += packet(f, cut=rng.randrange(min(len(f), 255) + 1))
            elif kind == 1:
                burst += packet(f, hint=rng.randrange(3))
            elif kind == 2:
                burst += packet(f, frame_extra_units=rng.randrange(1, 16))
            else:
                burst += packet(f)
        seeds[f"burst-{n:02d}"] = burst
    for name in os.listdir(out):
        os.remove(os.path.join(out, name))
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} seeds in {out}")


if __name__ == "__main__":
    main()
