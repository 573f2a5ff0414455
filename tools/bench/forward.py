#!/usr/bin/env python3
"""Suite `forward`: sluice (1 worker, 1,000 rules) against dpdk-testpmd io and macswap.

Identical virtual devices for all three: port 0 = net_pcap replaying 64-byte valid IPv4/UDP
frames with infinite_rx=1, port 1 = net_null (no-rx). The same EAL options and lcores: main
lcore 0, one forwarding lcore 1. Runs are A/B interleaved (sluice, io, macswap; repeated).
Each tool reports its per-second RX rate (sluice's --stats-period table, testpmd's
--stats-period); a run's rate is the median of its samples after the first two (warm-up).
Cycles per packet = TSC Hz / pps (the forwarding lcore polls at 100%).
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "integration"))
from packets import ETH_IPV4, UDP, eth, ipv4, udp, write_pcap  # noqa: E402
from rules import flows_yaml  # noqa: E402


def traffic(path, flows=256):
    frames = []
    for i in range(flows):
        f = eth(ETH_IPV4, ipv4(f"10.0.{i // 250}.{i % 250 + 1}", f"192.168.{i % 7}.{i % 200 + 1}", UDP,
                                udp(1024 + i, 2000 + i % 50, b"\0" * 18)))
        assert len(f) == 60, len(f)  # 64 bytes on the wire with the FCS
        frames.append(f)
    write_pcap(path, frames)


def eal(prefix, mem):
    return ["-l", "0,1", *mem, "--no-pci", f"--file-prefix={prefix}", "--log-level=lib.eal:error",
            "--log-level=pmd.net.pcap:error"]


def sample(cmd, seconds, pattern):
    """Runs cmd for `seconds`, SIGINT, returns the per-second rates matched by pattern."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    out = ""
    try:
        time.sleep(seconds)
    finally:
        p.send_signal(signal.SIGINT)
        try:
            out, _ = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
    for a in cmd:  # EAL leaves its runtime folder behind
        if a.startswith("--file-prefix="):
            shutil.rmtree(os.path.join("/var/run/dpdk", a.split("=", 1)[1]), ignore_errors=True)
    rates = [int(x) for x in re.findall(pattern, out)]
    return rates, out


def bench_memory(mib=512, min_free_pages=300):
    """EAL memory options: hugepages when enough are free and mounted, else --no-huge."""
    free = 0
    for line in open("/proc/meminfo") if "hugetlbfs" in open("/proc/mounts").read() else []:
        if line.startswith("HugePages_Free"):
            free = int(line.split()[1])
    if free >= min_free_pages:
        return ["--socket-mem", str(mib), "--huge-unlink"], "hugepages"
    return ["--no-huge", "-m", str(2 * mib)], "--no-huge"


def port0_rate(cmd, seconds, pattern, what):
    """Runs cmd, returns the steady RX rate of port 0 (every other per-second sample: the
    tools list port 0, then port 1); exits when it forwarded nothing."""
    rates, out = sample(cmd, seconds, pattern)
    rx = rates[0::2]
    if not rx or max(rx) == 0:
        print(out[-3000:], file=sys.stderr)
        sys.exit(f"bench: {what} forwarded nothing")
    return steady(rx), out


def steady(rates):
    rates = [r for r in rates[2:] if r > 0] or [r for r in rates if r > 0]
    return statistics.median(rates) if rates else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--simd", default="auto", help="sluice's validation kernel (--simd)")
    args = ap.parse_args()
    sluice = os.path.join(args.root, "build", "app", "sluice")
    mem, memory = bench_memory()

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as d:
        pcap = os.path.join(d, "udp64.pcap")
        traffic(pcap)
        with open(os.path.join(d, "flows.yaml"), "w") as f:
            f.write(flows_yaml(args.rules))
        with open(os.path.join(d, "sluice.yaml"), "w") as f:
            f.write(f"ports:\n  - name: in\n    device: \"net_pcap0,rx_pcap={pcap},infinite_rx=1\"\n"
                    f"  - name: out\n    device: \"net_null0,no-rx=1\"\n"
                    f"workers:\n  lcores: [1]\n  burst: 32\nflows: flows.yaml\n")
        vdevs = ["--vdev", f"net_pcap0,rx_pcap={pcap},infinite_rx=1", "--vdev", "net_null0,no-rx=1"]
        tsc_hz = None
        results = {"sluice": [], "testpmd-io": [], "testpmd-macswap": []}
        for run in range(args.runs):
            rates, out = sample([sluice, *eal(f"bench-s{run}", mem), "--", "-c", os.path.join(d, "sluice.yaml"),
                                 "--stats-period", "1", "--simd", args.simd], args.seconds, r"\n  Rx-pps:\s+(\d+)")
            # The table lists port 0 (in) first: every other Rx-pps line is port 1 (out, no rx).
            m = re.search(r"TSC (\d+) Hz", out)
            if m:
                tsc_hz = int(m.group(1))
            rx = rates[0::2]
            if not rx or max(rx) == 0:
                print(out[-3000:], file=sys.stderr)
                sys.exit("bench: sluice forwarded nothing")
            results["sluice"].append(steady(rx))
            for mode in ["io", "macswap"]:
                rates, out = sample(["dpdk-testpmd", *eal(f"bench-t{run}", mem), *vdevs, "--", f"--forward-mode={mode}",
                                     "--nb-cores=1", "--no-flush-rx", "--stats-period=1", "--auto-start",
                                     "--txd=1024", "--rxd=1024", "--burst=32"],
                                    args.seconds, r"Rx-pps:\s+(\d+)")
                rx = rates[0::2]
                if not rx or max(rx) == 0:
                    print(out[-3000:], file=sys.stderr)
                    sys.exit(f"bench: testpmd {mode} forwarded nothing")
                results[f"testpmd-{mode}"].append(steady(rx))
            print(f"run {run + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1] / 1e6:.2f} Mpps" for k, v in results.items()),
                  file=sys.stderr)

    tsc_hz = tsc_hz or 0
    print(f"\nforward: 64 B IPv4/UDP, net_pcap(infinite_rx) -> net_null, 1 forwarding lcore, {memory}, "
          f"{args.rules} rules in sluice, --simd {args.simd}, {args.runs} runs x {args.seconds:.0f} s, A/B interleaved")
    print(f"{'':18}{'median Mpps':>12}{'min':>8}{'max':>8}{'cycles/pkt':>12}{'vs io':>8}")
    io = statistics.median(results["testpmd-io"])
    for name, vals in results.items():
        med = statistics.median(vals)
        cyc = tsc_hz / med if med and tsc_hz else 0
        print(f"{name:18}{med / 1e6:12.2f}{min(vals) / 1e6:8.2f}{max(vals) / 1e6:8.2f}{cyc:12.1f}{med / io:8.2f}")
    ratios = [s / t for s, t in zip(results["sluice"], results["testpmd-io"])]
    ratio = statistics.median(ratios)
    spread = (max(ratios) - min(ratios)) / ratio if ratio else 0
    sl = statistics.median(results["sluice"])
    print(f"sluice / testpmd-macswap: {sl / statistics.median(results['testpmd-macswap']):.2f}")
    print(json.dumps({"suite": "forward", "unit": "Mpps", "sluice": round(sl / 1e6, 3), "anchor": "testpmd-io",
                      "anchor_value": round(io / 1e6, 3), "ratio": round(ratio, 3), "runs": args.runs,
                      "spread": round(spread, 3)}))


if __name__ == "__main__":
    main()
