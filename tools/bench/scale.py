#!/usr/bin/env python3
"""Suite `scale`: forwarding Mpps with 1..N workers, sluice against dpdk-testpmd io.

rss: port 0 = net_null generating 64-byte frames on one RX queue per worker (net_null
reports RSS: each queue is its own source), port 1 = net_null (no-rx). net_null's frames are
zeros (not IP), so sluice validates each and forwards it by its non_ip action: the per-packet
cost of the loop without classification. testpmd io gets the same vdevs, --nb-cores=K and K
RX/TX queues.
ring: port 0 = net_pcap replaying 64-byte IPv4/UDP frames of 256 flows (infinite_rx), one RX
queue that worker 0 spreads over the K workers (distribute: ring), 1,000 rules. testpmd cannot
spread one queue, so its anchor is sluice's own 1-worker rate times K (linearity).

Workers run on CPUs 1..K (the main lcore on CPU 0); a K beyond the machine's CPUs wraps round
and is marked oversubscribed. Runs are interleaved per K (sluice, testpmd). Last line: the
CONTRACT JSON for the largest K, with per-K lists beside it.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward import bench_memory, port0_rate, traffic  # noqa: E402
from rules import flows_yaml  # noqa: E402


def lcores(k, cpus):
    """EAL --lcores: lcore 0 (main) on the first CPU, lcore i on CPU i, wrapping."""
    others = cpus[1:] or cpus
    return ",".join(["0@" + str(cpus[0])] + [f"{i}@{others[(i - 1) % len(others)]}" for i in range(1, k + 1)])


def eal(prefix, mem, k, cpus, vdevs):
    args = ["--lcores", lcores(k, cpus), *mem, "--no-pci", f"--file-prefix={prefix}", "--log-level=lib.eal:error",
            "--log-level=pmd.net.pcap:error"]
    for v in vdevs:
        args += ["--vdev", v]
    return args


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--max-workers", type=int, default=0, help="default: CPUs - 1, at least 2")
    ap.add_argument("--mode", choices=["rss", "ring"], default="rss")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    top = args.max_workers or max(2, len(cpus) - 1)
    sluice = os.path.join(args.root, "build", "app", "sluice")
    mem, _ = bench_memory()
    ks = list(range(1, top + 1))
    res = {k: {"sluice": [], "testpmd-io": []} for k in ks}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-scale-") as d:
        pcap = os.path.join(d, "udp64.pcap")
        traffic(pcap)
        if args.mode == "rss":
            src = "net_null0,size=64"
            flows = "version: 1\nnon_ip: { action: forward, to: out }\ndefault: { action: forward, to: out }\n"
        else:
            src = f"net_pcap0,rx_pcap={pcap},infinite_rx=1"
            flows = flows_yaml(1000)
        with open(os.path.join(d, "flows.yaml"), "w") as f:
            f.write(flows)
        sink = "net_null1,no-rx=1"
        for run in range(args.runs):
            for k in ks:
                cfg = os.path.join(d, f"sluice{k}.yaml")
                # net_pcap has a TX queue per tx_pcap: one per worker, though nothing goes out there.
                dev = src if args.mode == "rss" else src + ",tx_pcap=/dev/null" * k
                with open(cfg, "w") as f:
                    f.write(f"ports:\n  - name: in\n    device: \"{dev}\"\n    distribute: {args.mode}\n"
                            f"  - name: out\n    device: \"{sink}\"\nworkers:\n"
                            f"  lcores: [{', '.join(str(i) for i in range(1, k + 1))}]\n  burst: 32\n"
                            f"flows: flows.yaml\n")
                rate, _ = port0_rate([sluice, *eal(f"scale-s{run}-{k}", mem, k, cpus, []), "--", "-c", cfg,
                                      "--stats-period", "1"], args.seconds, r"\n  Rx-pps:\s+(\d+)",
                                     f"sluice with {k} workers")
                res[k]["sluice"].append(rate)
                if args.mode == "rss":
                    rate, _ = port0_rate(["dpdk-testpmd", *eal(f"scale-t{run}-{k}", mem, k, cpus, [src, sink]), "--",
                                          "--forward-mode=io", f"--nb-cores={k}", f"--rxq={k}", f"--txq={k}",
                                          "--no-flush-rx", "--stats-period=1", "--auto-start", "--txd=1024",
                                          "--rxd=1024", "--burst=32"], args.seconds, r"Rx-pps:\s+(\d+)",
                                         f"testpmd with {k} cores")
                    res[k]["testpmd-io"].append(rate)
                print(f"run {run + 1}/{args.runs}, {k} workers: sluice {res[k]['sluice'][-1] / 1e6:.2f} Mpps" +
                      (f", testpmd io {res[k]['testpmd-io'][-1] / 1e6:.2f}" if res[k]["testpmd-io"] else ""),
                      file=sys.stderr)

    one = statistics.median(res[1]["sluice"])
    print(f"\nscale ({args.mode}): {'net_null, non-IP frames forwarded' if args.mode == 'rss' else 'net_pcap, 256 flows, 1,000 rules, spread by worker 0'}"
          f"; {len(cpus)} CPUs; {args.runs} runs x {args.seconds:.0f} s, interleaved")
    print(f"{'workers':>8}{'sluice Mpps':>13}{'min':>8}{'max':>8}{'anchor':>12}{'ratio':>8}{'linearity':>11}")
    rows = []
    for k in ks:
        s = statistics.median(res[k]["sluice"])
        t = statistics.median(res[k]["testpmd-io"]) if res[k]["testpmd-io"] else k * one
        lin = s / (k * one) if one else 0
        over = " oversubscribed" if k > max(1, len(cpus) - 1) else ""
        rows.append((k, s, t, lin))
        print(f"{k:>8}{s / 1e6:13.2f}{min(res[k]['sluice']) / 1e6:8.2f}{max(res[k]['sluice']) / 1e6:8.2f}"
              f"{t / 1e6:12.2f}{s / t if t else 0:8.2f}{lin:11.2f}{over}")
    k, s, t, lin = rows[-1]
    ratios = ([a / b for a, b in zip(res[k]["sluice"], res[k]["testpmd-io"])] if res[k]["testpmd-io"]
              else [a / t for a in res[k]["sluice"]])
    ratio = statistics.median(ratios)
    print(json.dumps({"suite": "scale", "unit": "Mpps", "sluice": round(s / 1e6, 3),
                      "anchor": "testpmd-io" if args.mode == "rss" else "sluice-1-worker-x-K",
                      "anchor_value": round(t / 1e6, 3), "ratio": round(ratio, 3), "runs": args.runs,
                      "spread": round((max(ratios) - min(ratios)) / ratio if ratio else 0, 3), "mode": args.mode,
                      "workers": ks, "sluice_mpps": [round(r[1] / 1e6, 3) for r in rows],
                      "anchor_mpps": [round(r[2] / 1e6, 3) for r in rows],
                      "linearity": [round(r[3], 3) for r in rows], "cpus": len(cpus)}))


if __name__ == "__main__":
    main()
