#!/usr/bin/env python3
"""Suite `validate`: the validation kernels against the DPDK anchor, cycles per packet.

sluice-bench-stages times bursts of 32 prebuilt packets in memory (headers in L1), cycling
through 256 frames: `udp64` (64-byte IPv4/UDP) and `mix` (40% IPv4/TCP, 30% IPv4/UDP, 20%
IPv6/TCP, 10% VLAN-tagged IPv4), for the scalar reference, every SIMD kernel the CPU runs,
and the anchor (the same checks written with DPDK's header structs and rte_ipv4_cksum, one
packet at a time). Each must give the reference's verdicts and keys before it is timed.
Repetitions of all benchmarks are randomly interleaved (A/B), --runs of each; a run's value
is TSC cycles over the timed loop divided by packets. The last line is CONTRACT's JSON for
the kernel `--simd auto` picks (the widest within DPDK's default 256-bit SIMD limit), on
udp64: ratio = anchor cycles / kernel cycles (higher is better).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

TRAFFIC = ["udp64", "mix"]
AUTO_MAX_BITS = 256  # DPDK's default max SIMD bitwidth on x86
BITS = {"scalar": 64, "avx2": 256, "avx512": 512}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds per repetition")
    args = ap.parse_args()
    exe = os.path.join(args.root, "build", "tools", "sluice-bench-stages")
    if not os.path.exists(exe):
        sys.exit("bench: build/tools/sluice-bench-stages is missing (Google Benchmark not found?)")

    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        p = subprocess.run([exe, "--benchmark_filter=^BM_Validate/", f"--benchmark_repetitions={args.runs}",
                            "--benchmark_enable_random_interleaving=true",
                            f"--benchmark_min_time={args.min_time}", f"--benchmark_out={out.name}",
                            "--benchmark_out_format=json", "--benchmark_format=console"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            print(p.stdout[-3000:], p.stderr[-3000:], file=sys.stderr)
            sys.exit("bench: sluice-bench-stages failed")
        data = json.load(open(out.name))
    m = re.search(r"TSC ([\d.]+) GHz", p.stderr)
    tsc_ghz = float(m.group(1)) if m else 0.0
    for line in p.stderr.splitlines():
        if "lacks" in line:
            print(line, file=sys.stderr)

    # cycles[(traffic, validator)][repetition] and the same from CPU time (robust to preemption).
    cycles, cpu_cycles = {}, {}
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration" or "error_occurred" in b and b["error_occurred"]:
            continue
        _, traffic, validator = b["run_name"].split("/")
        rep = b.get("repetition_index", 0)
        cycles.setdefault((traffic, validator), {})[rep] = b["cycles_per_pkt"]
        cpu_cycles.setdefault((traffic, validator), {})[rep] = b["cpu_time"] * tsc_ghz / 32
    errors = [b["name"] + ": " + b.get("error_message", "") for b in data["benchmarks"] if b.get("error_occurred")]
    if errors:
        sys.exit("bench: " + "; ".join(errors))
    kernels = sorted({v for (_, v) in cycles if v != "anchor"}, key=lambda k: BITS.get(k, 0))
    validators = kernels + ["anchor"]
    auto = max((k for k in kernels if BITS.get(k, 0) <= AUTO_MAX_BITS), key=lambda k: BITS.get(k, 0))

    med = {key: statistics.median(vals.values()) for key, vals in cycles.items()}
    cpu_med = {key: statistics.median(vals.values()) for key, vals in cpu_cycles.items()}
    load = data["context"].get("load_avg", [])
    print(f"\nvalidate: bursts of 32 prebuilt packets in memory, headers in L1; TSC {tsc_ghz:.3f} GHz; "
          f"{args.runs} runs of each, randomly interleaved; load average {', '.join(f'{x:.2f}' for x in load)}")
    print("TSC cycles per packet, median [min..max] (cpu: from process CPU time, what preemption does not inflate)")
    print(f"{'':10}" + "".join(f"{t:>30}" for t in TRAFFIC))
    for v in validators:
        row = f"{v:10}"
        for t in TRAFFIC:
            vals = list(cycles[(t, v)].values())
            row += f"{med[(t, v)]:>9.2f} [{min(vals):5.2f}..{max(vals):6.2f}] cpu {cpu_med[(t, v)]:5.2f}"
        print(row)
    for k in kernels:
        if k == "scalar":
            continue
        print(f"{k + ' speed-up':18}" + "".join(
            f"   {t}: {med[(t, 'scalar')] / med[(t, k)]:4.2f}x vs scalar, {med[(t, 'anchor')] / med[(t, k)]:4.2f}x vs anchor"
            for t in TRAFFIC))

    # Per-run ratios (anchor / kernel, same repetition index: the two ran interleaved).
    reps = sorted(set(cycles[("udp64", auto)]) & set(cycles[("udp64", "anchor")]))
    ratios = [cycles[("udp64", "anchor")][r] / cycles[("udp64", auto)][r] for r in reps]
    ratio = statistics.median(ratios)
    spread = (max(ratios) - min(ratios)) / ratio if ratio else 0
    print(json.dumps({"suite": "validate", "unit": "cycles/pkt", "sluice": round(med[("udp64", auto)], 2),
                      "kernel": auto, "traffic": "udp64", "anchor": "dpdk-rte_ipv4_cksum",
                      "anchor_value": round(med[("udp64", "anchor")], 2), "ratio": round(ratio, 3),
                      "vs_scalar": round(med[("udp64", "scalar")] / med[("udp64", auto)], 3),
                      "runs": args.runs, "spread": round(spread, 3)}))


if __name__ == "__main__":
    main()
