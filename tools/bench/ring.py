#!/usr/bin/env python3
"""Suite `ring`: the ring distributor's hand-off against DPDK's ring_perf_autotest.

Interleaved runs of `dpdk-test ring_perf_autotest` (its single-lcore "legacy APIs: SP/SC:
burst (size: 32)" line: TSC cycles to enqueue and dequeue a burst of 32 on an SP/SC ring. DPDK
22.11's test divides by the iterations only, so the line is per burst; later DPDK divides by
the elements too. The suite divides by 32: cycles per packet) and build/tools/sluice-bench-ring (tools/bench/ring.cpp), which times on one lcore:
  ring     ring_perf's loop again, in sluice's build;
  hash     the symmetric flow hash of a 64-byte IPv4/UDP frame (256 flows, one direction,
           the same frames again and again);
  hash_mixed  the same hash on 16,384 frames of those flows, each in a random direction (what
           a link carrying both directions gives the distributor);
  handoff  pipeline::spread_burst over three workers plus the receivers' dequeues.
The JSON's `sluice` is the hand-off without the hash (counting sort, RX TSC stamp, enqueue,
dequeue: what crossing a ring costs a packet), `ratio` = ring_perf / that (higher is better;
the goal is 1.5x ring_perf at most, ratio >= 0.67); `hash`, `hash_mixed` and `handoff_total`
beside it.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward import bench_memory  # noqa: E402

ANCHOR = re.compile(r"legacy APIs: SP/SC: burst \(size: 32\): ([0-9.]+)")


def run(cmd, prefix, stdin=None, timeout=600):
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    shutil.rmtree(os.path.join("/var/run/dpdk", prefix), ignore_errors=True)
    return p.returncode, p.stdout + p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    bench = os.path.join(args.root, "build", "tools", "sluice-bench-ring")
    cpu = sorted(os.sched_getaffinity(0))
    lcores = f"{cpu[0]},{cpu[-1]}" if len(cpu) > 1 else f"{cpu[0]}"
    mem, _ = bench_memory(256, 200)
    anchor, ring, hsh, mixed, handoff = [], [], [], [], []
    for r in range(args.runs):
        prefix = f"benchringt{os.getpid()}"
        rc, out = run(["dpdk-test", "-l", lcores, *mem, "--no-pci", f"--file-prefix={prefix}",
                       "--log-level=lib.eal:error"], prefix, stdin="ring_perf_autotest\nquit\n")
        m = ANCHOR.search(out)
        if not m:
            print(out[-3000:], file=sys.stderr)
            sys.exit("bench: ring_perf_autotest printed no SP/SC burst (size: 32) line")
        anchor.append(float(m.group(1)) / 32)  # per burst of 32 in 22.11 (see above)
        prefix = f"benchrings{os.getpid()}"
        rc, out = run([bench, "-l", str(cpu[-1]), *mem, "--no-pci", f"--file-prefix={prefix}",
                       "--log-level=lib.eal:error", "--", "--reps", "5"], prefix)
        vals = dict(re.findall(r"^(ring|hash|hash_mixed|handoff|refused) ([0-9.]+)$", out, re.M))
        if rc != 0 or len(vals) < 5:
            print(out[-3000:], file=sys.stderr)
            sys.exit(f"bench: sluice-bench-ring failed (exit {rc})")
        ring.append(float(vals["ring"]))
        hsh.append(float(vals["hash"]))
        mixed.append(float(vals["hash_mixed"]))
        handoff.append(float(vals["handoff"]))
        print(f"run {r + 1}/{args.runs}: ring_perf {anchor[-1]:.2f}, ring {ring[-1]:.2f}, hash {hsh[-1]:.2f} "
              f"(mixed directions {mixed[-1]:.2f}), hand-off {handoff[-1]:.2f} cycles/packet", file=sys.stderr)
    crossing = [max(h - x, 0.01) for h, x in zip(handoff, hsh)]
    ratios = [a / c for a, c in zip(anchor, crossing)]
    ratio = statistics.median(ratios)
    med = statistics.median
    print(f"\nring: TSC cycles per packet, single lcore, bursts of 32, {args.runs} runs interleaved")
    print(f"{'':38}{'median':>9}{'min':>8}{'max':>8}")
    for name, v in [("ring_perf_autotest SP/SC burst 32 /32", anchor), ("same loop in sluice's build", ring),
                    ("flow hash", hsh), ("flow hash, both directions mixed", mixed), ("hand-off, whole (spread + dequeue)", handoff),
                    ("hand-off without the hash", crossing)]:
        print(f"{name:38}{med(v):9.2f}{min(v):8.2f}{max(v):8.2f}")
    print(json.dumps({"suite": "ring", "unit": "cycles/packet", "sluice": round(med(crossing), 2),
                      "anchor": "ring_perf_autotest SP/SC burst 32", "anchor_value": round(med(anchor), 2),
                      "ratio": round(ratio, 3), "runs": args.runs,
                      "spread": round((max(ratios) - min(ratios)) / ratio if ratio else 0, 3),
                      "hash": round(med(hsh), 2), "hash_mixed": round(med(mixed), 2), "handoff_total": round(med(handoff), 2),
                      "ring_loop": round(med(ring), 2)}))


if __name__ == "__main__":
    main()
