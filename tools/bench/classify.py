#!/usr/bin/env python3
"""Suite `classify`: sluice's classify stage against dpdk-test-acl, same rules, same trace.

For each rule count (100, 1,000, 10,000, 100,000): tools/bench/rules.py's rule set is written
as sluice's flows.yaml and, in rank order (first match wins), as dpdk-test-acl's ClassBench
rule file; one trace of 65,536 packets (80% inside a random rule, 20% anywhere) in
dpdk-test-acl's format feeds both. Both classify it in steps of 32 packets (sluice's burst),
one category, rte_acl's default algorithm (the best the CPU has), no size limit on the tries;
each reports TSC cycles per packet over all iterations. Runs are A/B interleaved. Before
timing, the two tools' answers are compared packet by packet on the first 4,096 packets.

Then, in a running sluice (1 worker, net_pcap infinite_rx -> net_null): reload times per rule
count (parse, build, publish, grace from /sluice/reload's reply), and the forwarding rate
while reloading back to back as a ratio to the rate without reloads (1,000 rules).
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
from packets import ETH_IPV4, UDP, eth, ipv4, udp, write_pcap  # noqa: E402
from rules import PROTO, acl_rules, flows_yaml, rule_list  # noqa: E402
from telemetry import Telemetry  # noqa: E402

TRACE = int(os.environ.get("BENCH_TRACE", 65536))
CHECKED = 4096
STEP = 32


def ip_int(dotted):
    a, b, c, d = (int(x) for x in dotted.split("."))
    return a << 24 | b << 16 | c << 8 | d


def in_cidr(rng, cidr):
    net, plen = cidr.split("/")
    plen = int(plen)
    host = rng.getrandbits(32 - plen) if plen < 32 else 0
    return ip_int(net) | host


def trace(rules, n, seed=11):
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        if rng.random() < 0.8:
            r = rng.choice(rules)
            src, dst = in_cidr(rng, r["src"]), in_cidr(rng, r["dst"])
            lo, hi = r["dport"]
            dport, proto = rng.randint(lo, hi), PROTO[r["proto"]]
        else:
            src, dst = rng.getrandbits(32), rng.getrandbits(32)
            dport, proto = rng.randrange(65536), rng.choice([6, 17])
        lines.append(f"{src} {dst} {rng.randrange(1024, 65536)} {dport} {proto}")
    return "\n".join(lines) + "\n"


def eal(tag, mem_mib):
    return ["--no-huge", "-m", str(mem_mib), "--no-pci", "--no-shconf", "--no-telemetry",
            f"--file-prefix=bench-{tag}-{os.getpid()}", "-l", "0", "--log-level=lib.eal:error"]


def test_acl(d, n, iters, tag, verbose=0, trace_file="trace.txt", tracenum=TRACE):
    cmd = ["dpdk-test-acl", *eal(tag, 4096), "--", f"--rulesf={d}/rules.acl", f"--tracef={d}/{trace_file}",
           f"--rulenum={max(n, 1)}", f"--tracenum={tracenum}", f"--tracestep={STEP}", "--bldcat=1", "--runcat=1",
           f"--iter={iters}", f"--verbose={verbose}"]
    p = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        sys.exit(f"bench: dpdk-test-acl failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p.stdout


def sluice_cls(tool, d, iters, results=None):
    cmd = [tool, "--flows", f"{d}/flows.yaml", "--trace", f"{d}/trace.txt", "--iter", str(iters),
           "--step", str(STEP), "-m", "4096"]
    if results:
        cmd += ["--results", results]
    p = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        sys.exit(f"bench: sluice-bench-classify failed:\n{p.stdout}\n{p.stderr[-2000:]}")
    return p.stdout


def cycles(text, pattern):
    m = re.search(pattern, text)
    if not m:
        sys.exit(f"bench: no cycles/pkt in:\n{text[-2000:]}")
    return float(m.group(1))


def same_answers(tool, d, n):
    """Both tools' answer for each of the first CHECKED packets (rank position or none)."""
    with open(f"{d}/trace.txt") as f:
        head = [next(f) for _ in range(CHECKED)]
    with open(f"{d}/trace-head.txt", "w") as f:
        f.writelines(head)
    out = test_acl(d, n, 1, "chk", verbose=2, trace_file="trace-head.txt", tracenum=CHECKED)
    acl = [int(x) for x in re.findall(r"ipv4_5tuple: \d+, category: 0, result: (\d+)", out)]
    sluice_cls(tool, d, 1, results=f"{d}/sluice-results.txt")
    mine = [int(x) for x in open(f"{d}/sluice-results.txt").read().split()][:CHECKED]
    return acl == mine[:len(acl)] and len(acl) == CHECKED, acl, mine


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rules", default="100,1000,10000,100000")
    ap.add_argument("--iter", type=int, default=100)
    ap.add_argument("--skip-reload", action="store_true")
    args = ap.parse_args()
    tool = os.path.join(args.root, "build", "tools", "sluice-bench-classify")
    counts = [int(x) for x in args.rules.split(",")]
    table = []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-cls-") as d:
        for n in counts:
            rules = rule_list(n)
            with open(f"{d}/flows.yaml", "w") as f:
                f.write(flows_yaml(n, rules=rules))
            with open(f"{d}/rules.acl", "w") as f:
                f.write(acl_rules(rules))
            with open(f"{d}/trace.txt", "w") as f:
                f.write(trace(rules, TRACE))
            ok, acl, mine = same_answers(tool, d, n)
            if not ok:
                bad = next((i for i, (a, b) in enumerate(zip(acl, mine)) if a != b), None)
                sys.exit(f"bench: {n} rules: sluice and dpdk-test-acl disagree (packet {bad}: "
                         f"{acl[bad] if bad is not None else '?'} vs {mine[bad] if bad is not None else '?'}; "
                         f"{len(acl)} answers)")
            s_vals, a_vals = [], []
            for run in range(args.runs):
                s_out = sluice_cls(tool, d, args.iter)
                s_vals.append(cycles(s_out, r"([\d.]+) cycles/pkt"))
                a_out = test_acl(d, n, args.iter, f"a{run}")
                a_vals.append(cycles(a_out, r"([\d.]+) cycles/pkt"))
                build = re.search(r"build ([\d.]+) ms", s_out).group(1)
                print(f"{n} rules, run {run + 1}/{args.runs}: sluice {s_vals[-1]:.1f}, dpdk-test-acl "
                      f"{a_vals[-1]:.1f} cycles/pkt (sluice build {build} ms)", file=sys.stderr)
            table.append((n, statistics.median(s_vals), statistics.median(a_vals),
                          [a / s for s, a in zip(s_vals, a_vals)]))

    print(f"\nclassify: rules.py rule sets, {TRACE} packets (80% inside a rule), steps of {STEP}, 1 category, "
          f"rte_acl default algorithm, {args.runs} runs x {args.iter} iterations, A/B interleaved; "
          f"answers identical on the first {CHECKED} packets")
    print(f"{'rules':>8}{'sluice':>10}{'test-acl':>10}{'sluice/acl':>12}   cycles/packet (median)")
    for n, s, a, _ in table:
        print(f"{n:>8}{s:>10.1f}{a:>10.1f}{s / a:>12.2f}")
    geo = lambda xs: statistics.geometric_mean(xs)  # noqa: E731
    s_geo, a_geo = geo([t[1] for t in table]), geo([t[2] for t in table])
    ratios = [r for t in table for r in t[3]]
    ratio = a_geo / s_geo
    spread = (max(ratios) - min(ratios)) / ratio if ratio else 0
    print(json.dumps({"suite": "classify", "unit": "cycles/pkt (geomean over rule counts)", "sluice": round(s_geo, 1),
                      "anchor": "dpdk-test-acl", "anchor_value": round(a_geo, 1), "ratio": round(ratio, 3),
                      "runs": args.runs, "spread": round(spread, 3)}))


if __name__ == "__main__":
    main()
