#!/usr/bin/python3
"""Suite `e2e`: NDR and PDR through sluice (1,000 rules) against dpdk-testpmd --forward-mode=io.

Path: sluice-gen -> memif -> DUT -> memif -> sluice-gen, 64-byte IPv4/UDP frames (60 bytes
plus FCS), one flow and 1,000 flows that all match the rule set's hit rule (ranked in the
middle of 1,000, tools/bench/rules.py). Each DUT gets the same lcores, memif rings and
memory; every trial starts DUT and generator afresh. The search is tools/traffic-test's
(--mode ndr+pdr, scenario.search_rate): a binary search from the unpaced offer down in which
a failing trial is repeated before it lowers the upper bound (one unlucky trial on a shared
vCPU does not floor the result), and the rate found must pass a final trial three times as
long; NDR is zero loss, PDR at most 0.1%, the PDR search going on from the NDR's bounds.
Interleaved A/B: per run and flow count, sluice then testpmd, the order swapped every other
run. Latency p50/p99 is measured at 50% of each one's NDR. `--runs N`: per case the median
and the spread (max - min) / median over the runs. Last line: the CONTRACT JSON, ratio =
sluice / testpmd on the geometric mean of the two flow counts' median NDRs (per-case NDR, PDR,
p50 and p99 beside it); spread is that of the per-run ratio.
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


def paired(xs, ys, keys):
    """(keys used, geomean of xs, geomean of ys) over the keys where both are > 0: geomean drops
    zeros, so unpaired one side's 0 would leave the two means over different flow counts."""
    used = [k for k, x, y in zip(keys, xs, ys) if x > 0 and y > 0]
    return (used, geomean([x for x, y in zip(xs, ys) if x > 0 and y > 0]),
            geomean([y for x, y in zip(xs, ys) if x > 0 and y > 0]))


def spread(xs):
    m = statistics.median(xs)
    return (max(xs) - min(xs)) / m if m and len(xs) > 1 else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--trial", type=float, default=2.0, help="seconds per search trial")
    ap.add_argument("--final", type=float, help="seconds of the final trial (default 3 x --trial)")
    ap.add_argument("--confirm", type=int, default=1, help="repeats of a failing trial before it counts")
    ap.add_argument("--resolution", type=float, default=0.05)
    ap.add_argument("--pdr-loss", type=float, default=0.001)
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
                for d in (duts if run % 2 == 0 else duts[::-1]):
                    print(f"e2e: run {run + 1}/{args.runs}, {d}, {f} flow{'s' if f > 1 else ''}", file=sys.stderr)
                    scn = bench_scenario(d, f, args.rules)
                    scn["search"] = {"loss": args.pdr_loss}
                    with contextlib.redirect_stdout(sys.stderr):
                        rc, rep = scenario.run(scn, "ndr+pdr", out / f"run{run}-{d}-{f}", args.build,
                                               trial_s=args.trial, resolution=args.resolution,
                                               confirm=args.confirm, final_s=args.final)
                    if rc != 0 or not rep.get("result"):
                        sys.exit(f"bench e2e: {d} with {f} flows failed: {rep.get('error')}")
                    r = rep["result"]
                    lat = r["latency_at_half"]
                    print(f"e2e: run {run + 1} {d} {f} flows: NDR {r['ndr_pps'] / 1e6:.3f} Mpps, PDR "
                          f"{r['pdr_pps'] / 1e6:.3f} Mpps, p50/p99 at half NDR {lat.get('p50', 0) / 1e3:.1f}/"
                          f"{lat.get('p99', 0) / 1e3:.1f} us ({len(rep['trials'])} trials, "
                          f"{rep['results']['ndr']['confirmations']} failures confirmed, "
                          f"{rep['results']['ndr']['overturned']} overturned)", file=sys.stderr)
                    res[(d, f)].append(rep)
    med = {}
    for k, reps in res.items():
        rs = [rep["result"] for rep in reps]
        m = {}
        for key, vals in (("ndr", [r["ndr_pps"] for r in rs]), ("pdr", [r["pdr_pps"] for r in rs]),
                          ("p50", [r["latency_at_half"].get("p50", 0) for r in rs]),
                          ("p99", [r["latency_at_half"].get("p99", 0) for r in rs])):
            m[key] = statistics.median(vals)
            m[key + "_range"] = (min(vals), max(vals))
            m[key + "_spread"] = spread(vals)
        m["capped"] = all(r["limited_by"] == "generator" for r in rs)
        m["final_ok"] = all(rep["results"][x]["final_ok"] for rep in reps for x in ("ndr", "pdr"))
        med[k] = m

    place = T.placement_text(T.placement())
    print(f"\ne2e: NDR (zero loss) and PDR (<= {args.pdr_loss:.1%} loss), 64 B IPv4/UDP, sluice-gen -> memif -> DUT "
          f"-> memif -> sluice-gen; sluice with {args.rules} rules; {args.trial:g} s trials, failing ones repeated "
          f"{args.confirm}x, final trial {args.final or 3 * args.trial:g} s, resolution {args.resolution:.0%}; "
          f"{args.runs} run(s), A/B interleaved; median (min-max)")
    print(f"lcores: {place}")
    print(f"{'DUT':12}{'flows':>6}  {'NDR Mpps':<22}{'PDR Mpps':<22}{'p50 us':<24}{'p99 us':<28}(latency at 50% of NDR)")

    def cell(m, key, scale, digits):
        lo, hi = m[key + "_range"]
        return f"{m[key] / scale:.{digits}f} ({lo / scale:.{digits}f}-{hi / scale:.{digits}f})"

    for f in flow_counts:
        for d in duts:
            m = med[(d, f)]
            note = "  generator-limited: no loss even unpaced" if m["capped"] else ""
            note += "" if m["final_ok"] else "  (a search found no rate that held through its final trial: 0)"
            print(f"{d:12}{f:>6}  {cell(m, 'ndr', 1e6, 3):<22}{cell(m, 'pdr', 1e6, 3):<22}{cell(m, 'p50', 1e3, 1):<24}"
                  f"{cell(m, 'p99', 1e3, 1):<28}{note}")
    ratios = {f: (med[("sluice", f)]["ndr"] / med[("testpmd-io", f)]["ndr"] if med[("testpmd-io", f)]["ndr"] else 0)
              for f in flow_counts}
    print("NDR ratio sluice / testpmd-io: " +
          ", ".join(f"{f} flow{'s' if f > 1 else ''} " + (f"{r:.2f}" if med[("testpmd-io", f)]["ndr"] else "- (no anchor NDR)")
                    for f, r in ratios.items()) + " (goal >= 0.9)")
    both, sl, an = paired([med[("sluice", f)]["ndr"] for f in flow_counts],
                          [med[("testpmd-io", f)]["ndr"] for f in flow_counts], flow_counts)
    if len(both) < len(flow_counts):
        print("NDR geomean over " + (", ".join(f"{f} flow{'s' if f > 1 else ''}" for f in both) or "no flow count") +
              ": the others have no confirmed NDR on one side")

    def run_ratio(r):
        _, s_, a_ = paired([res[("sluice", f)][r]["result"]["ndr_pps"] for f in flow_counts],
                           [res[("testpmd-io", f)][r]["result"]["ndr_pps"] for f in flow_counts], flow_counts)
        return s_ / a_ if a_ else 0.0
    per_run = [run_ratio(r) for r in range(args.runs)]
    ratio = sl / an if an else 0
    line = {"suite": "e2e", "unit": "Mpps", "sluice": round(sl / 1e6, 3), "anchor": "testpmd-io",
            "anchor_value": round(an / 1e6, 3), "ratio": round(ratio, 3), "runs": args.runs,
            "spread": round(spread(per_run), 3), "ratio_flows": both}
    _, s_pdr, a_pdr = paired([med[("sluice", f)]["pdr"] for f in flow_counts],
                             [med[("testpmd-io", f)]["pdr"] for f in flow_counts], flow_counts)
    line["sluice_pdr"] = round(s_pdr / 1e6, 3)
    line["anchor_pdr"] = round(a_pdr / 1e6, 3)
    line["pdr_ratio"] = round(line["sluice_pdr"] / line["anchor_pdr"], 3) if line["anchor_pdr"] else 0
    line["pdr_loss"] = args.pdr_loss
    for f in flow_counts:
        for d, key in (("sluice", "sluice"), ("testpmd-io", "anchor")):
            m = med[(d, f)]
            line[f"{key}_ndr_{f}"] = round(m["ndr"] / 1e6, 3)
            line[f"{key}_ndr_spread_{f}"] = round(m["ndr_spread"], 3)
            line[f"{key}_pdr_{f}"] = round(m["pdr"] / 1e6, 3)
            line[f"{key}_pdr_spread_{f}"] = round(m["pdr_spread"], 3)
            line[f"{key}_p50_us_{f}"] = round(m["p50"] / 1e3, 1)
            line[f"{key}_p99_us_{f}"] = round(m["p99"] / 1e3, 1)
            line[f"{key}_p99_us_spread_{f}"] = round(m["p99_spread"], 3)
        line[f"ratio_{f}"] = round(ratios[f], 3)
        pa = med[("testpmd-io", f)]["pdr"]
        line[f"pdr_ratio_{f}"] = round(med[("sluice", f)]["pdr"] / pa, 3) if pa else 0
    print(json.dumps(line))


if __name__ == "__main__":
    main()
