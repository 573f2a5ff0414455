#!/usr/bin/env python3
"""Writes the seed corpus of the capture chunk fuzzer (tests/fuzz/corpus/chunks/).

A second, independent writer of CONTRACT "Capture store"'s chunk layout (SHB, IDBs, EPBs,
SLCK trailer with CRC-32C): replay_chunks requires every seed named good-* to scan as all
good chunks and every flip-* (one bit flipped) as exactly one corrupt chunk among good ones,
so a drift between this and lib/capture/chunk.cpp fails the build's tests.
Seeds: good segments, segments cut short, single-bit flips in each structural field, zeros,
text. Deterministic: rerunning it rewrites the same files.
   tests/fuzz/make_chunk_corpus.py [OUT_DIR]
"""
import os
import random
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
T0 = 1796162400 * 10**9  # 2026-12-01T22:00:00Z


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def option(code, value):
    return struct.pack("<HH", code, len(value)) + pad4(value)


def block(btype, body):
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def chunk(seq, ports, pkts, capacity=4096, snaplen=256):
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
                + option(4, b"sluice 0.1.0") + b"\0" * 4)
    for name in ports:
        out += block(1, struct.pack("<HHI", 1, 0, snaplen) + option(2, name.encode())
                     + option(9, b"\x09") + b"\0" * 4)
    for port, ts, frame in pkts:
        cap = frame[:snaplen]
        out += block(6, struct.pack("<IIIII", port, ts >> 32, ts & 0xFFFFFFFF, len(cap),
                                    len(frame)) + pad4(cap))
    covered = len(out)
    end = (covered + 56 + 4095) // 4096 * 4096
    assert end <= capacity
    total = end - covered
    first = pkts[0][1] if pkts else 0
    last = pkts[-1][1] if pkts else 0
    trailer = struct.pack("<II4sIQQQIII", 0x80534C43, total, b"SLCK", 1, seq, first, last,
                          len(pkts), covered, crc32c(out))
    trailer += b"\0" * (total - len(trailer) - 4) + struct.pack("<I", total)
    return out + trailer


def frame(rng, n, src, dport):
    eth = bytes([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, src]) + b"\x08\x00"
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, n - 14, 0, 0, 64, 17, 0, bytes([10, 0, 0, src]),
                     bytes([10, 0, 0, 2]))
    udp = struct.pack(">HHHH", 12345, dport, n - 34, 0)
    return eth + ip + udp + bytes(rng.randrange(256) for _ in range(n - 42))


def packets(rng, count, ts0, nports=2):
    return [(i % nports, ts0 + i * 1000,
             frame(rng, rng.randrange(60, 300), 1 + i % nports, 1000 + i))
            for i in range(count)]


def flip(b, at, bit=0):
    b = bytearray(b)
    b[at] ^= 1 << bit
    return bytes(b)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "chunks")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(5)
    ports = ["eth0", "eth1"]
    one = chunk(7, ports, packets(rng, 6, T0))
    three = b"".join(chunk(10 + i, ports, packets(rng, 8, T0 + i * 10**6)) for i in range(3))
    two = three[:8192]
    shb_idb = 48 + 2 * 40
    trailer0 = struct.unpack_from("<I", two, 4096 - 4)[0]
    t0 = 4096 - trailer0
    seeds = {
        "good-one-chunk": one,
        "good-three-chunks": three,
        "good-empty-chunk": chunk(0, ports, []),
        "good-one-port": chunk(3, ["uplink"], packets(rng, 3, T0, 1)),
        "cut-inside-packets": three[:4096 + 700],
        "cut-inside-trailer": one[:4000],
        "cut-header": one[:100],
        "flip-shb-type": flip(two, 0),
        "flip-epb-length": flip(two, shb_idb + 4, 3),
        "flip-trailer-type": flip(two, t0, 1),
        "flip-trailer-length": flip(two, t0 + 4, 2),
        "flip-trailer-end-length": flip(two, 4092, 5),
        "flip-seq": flip(three, t0 + 16, 4),
        "flip-crc": flip(two, t0 + 48),
        "zeros": b"\0" * 4096,
        "text": b"this is not a capture segment\n",
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
