#!/usr/bin/python3
"""Suite `e2e`: NDR through sluice (1,000 rules) against dpdk-testpmd --forward-mode=io.

Path: sluice-gen -> memif -> DUT -> memif -> sluice-gen, 64-byte IPv4/UDP frames (60 bytes
plus FCS), one flow and 1,000 flows that all match the rule set's hit rule (ranked in the
middle of 1,000, tools/bench/rules.py). Each DUT gets the same lcores, memif rings and
memory; every trial starts DUT and generator afresh (tools/traffic-test's NDR search).
Interleaved A/B: per run and flow count, sluice then testpmd. Latency p50/p99 is measured
at 50% of each one's NDR. Last line: the CONTRACT JSON, ratio = sluice / testpmd on the
geometric mean of the two flow counts' NDRs (per-case values beside it).
"""
import argparse
import contextlib
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "traffic"))
import scenario  # noqa: E402
import traffic as T  # noqa: E402


def bench_scenario(dut, flows, rules):
    scn = {
        "name": f"e2e-{dut}-{flows}",
        "topology": {"dut": dut, "ports": ["in", "out"], "tx": "in", "rx": "out", "mem": 128},
        "generator": {"mode": "flowgen", "flows": flows, "size": 64, "src": "10.0.0.1", "dst": "192.168.0.1",
                      "dport": 5001},
    }
    if dut == "sluice":
        scn["sluice"] = {"rules": rules}
    return scn


def geomean(xs):
    xs = [x for x in xs if x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--trial", type=float, default=2.0, help="seconds per search trial")
    ap.add_argument("--resolution", type=float, default=0.05)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--flows", default="1,1000")
    ap.add_argument("--out", help="reports and plots (default: a temp folder, removed)")
    ap.add_argument("--build", default=str(ROOT / "build"))
    args = ap.parse_args()
    try:
        T.require_hugepages(2 * 128 + 64)
    except T.Skip as e:
        print(f"SKIPPED: bench e2e: {e}")
        sys.exit(77)
    flow_counts = [int(f) for f in args.flows.split(",")]
    duts = ["sluice", "testpmd-io"]
    res = {(d, f): [] for d in duts for f in flow_counts}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-e2e-") as tmp:
        out = Path(args.out or tmp)
        for run in range(args.runs):
            for f in flow_counts:
                for d in duts:
                    print(f"e2e: run {run + 1}/{args.runs}, {d}, {f} flow{'s' if f > 1 else ''}", file=sys.stderr)
                    with contextlib.redirect_stdout(sys.stderr):
                        rc, rep = scenario.run(bench_scenario(d, f, args.rules), "ndr", out / f"run{run}-{d}-{f}",
                                               args.build, trial_s=args.trial, resolution=args.resolution)
                    if rc != 0 or not rep.get("result"):
                        sys.exit(f"bench e2e: {d} with {f} flows failed: {rep.get('error')}")
                    res[(d, f)].append(rep["result"])
    med = {}
    for k, rs in res.items():
        ndr = statistics.median(r["rate_pps"] for r in rs)
        lat = min(rs, key=lambda r: abs(r["rate_pps"] - ndr))["latency_at_half"]
        capped = all(r["rate_pps"] >= r["upper_bound_pps"] for r in rs)
        med[k] = {"ndr": ndr, "p50": lat.get("p50", 0), "p99": lat.get("p99", 0), "capped": capped,
                  "upper": statistics.median(r["upper_bound_pps"] for r in rs)}

    place = T.placement_text(T.placement())
    print(f"\ne2e: NDR (zero loss), 64 B IPv4/UDP, sluice-gen -> memif -> DUT -> memif -> sluice-gen; sluice with "
          f"{args.rules} rules; {args.trial:g} s trials, resolution {args.resolution:.0%}, {args.runs} run(s), A/B interleaved")
    print(f"lcores: {place}")
    print(f"{'DUT':12}{'flows':>7}{'NDR Mpps':>10}{'p50 us':>9}{'p99 us':>9}  (latency at 50% of the NDR)")
    for f in flow_counts:
        for d in duts:
            m = med[(d, f)]
            note = "  generator-limited: no loss even unpaced" if m["capped"] else ""
            print(f"{d:12}{f:>7}{m['ndr'] / 1e6:>10.3f}{m['p50'] / 1e3:>9.1f}{m['p99'] / 1e3:>9.1f}{note}")
    ratios = {f: (med[("sluice", f)]["ndr"] / med[("testpmd-io", f)]["ndr"] if med[("testpmd-io", f)]["ndr"] else 0)
              for f in flow_counts}
    print("ratio sluice / testpmd-io: " + ", ".join(f"{f} flow{'s' if f > 1 else ''} {r:.2f}" for f, r in ratios.items())
          + " (goal >= 0.9)")
    sl = geomean([med[("sluice", f)]["ndr"] for f in flow_counts])
    an = geomean([med[("testpmd-io", f)]["ndr"] for f in flow_counts])
    per_run = [geomean([res[("sluice", f)][r]["rate_pps"] for f in flow_counts]) /
               max(geomean([res[("testpmd-io", f)][r]["rate_pps"] for f in flow_counts]), 1) for r in range(args.runs)]
    ratio = sl / an if an else 0
    spread = (max(per_run) - min(per_run)) / ratio if ratio and len(per_run) > 1 else 0
    line = {"suite": "e2e", "unit": "Mpps", "sluice": round(sl / 1e6, 3), "anchor": "testpmd-io",
            "anchor_value": round(an / 1e6, 3), "ratio": round(ratio, 3), "runs": args.runs, "spread": round(spread, 3)}
    for f in flow_counts:
        for d, key in (("sluice", "sluice"), ("testpmd-io", "anchor")):
            m = med[(d, f)]
            line[f"{key}_ndr_{f}"] = round(m["ndr"] / 1e6, 3)
            line[f"{key}_p50_us_{f}"] = round(m["p50"] / 1e3, 1)
            line[f"{key}_p99_us_{f}"] = round(m["p99"] / 1e3, 1)
        line[f"ratio_{f}"] = round(ratios[f], 3)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
