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
count (parse, build, diff, publish, grace from /sluice/reload's reply, and the reload whole, file
read to rules published plus the grace period: `reload_ms`), and the forwarding rate
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

TRACE = 65536
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


def test_acl(d, n, iters, tag, verbose=0, trace_file="trace.txt", tracenum=None):
    cmd = ["dpdk-test-acl", *eal(tag, 4096), "--", f"--rulesf={d}/rules.acl", f"--tracef={d}/{trace_file}",
           f"--rulenum={max(n, 1)}", f"--tracenum={tracenum or TRACE}", f"--tracestep={STEP}", "--bldcat=1", "--runcat=1",
           f"--iter={iters}", f"--verbose={verbose}"]
    p = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    for arg in cmd:  # EAL leaves its runtime folder behind, even with --no-shconf
        if arg.startswith("--file-prefix="):
            shutil.rmtree(os.path.join("/var/run/dpdk", arg.split("=", 1)[1]), ignore_errors=True)
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


# ---- in a running sluice: reload times, forwarding rate while reloading -------------------

def udp_traffic(path, flows=256):
    """64-byte IPv4/UDP frames that hit bench-hit (10/8 -> 192.168/16, dst port >= 1024)."""
    frames = [eth(ETH_IPV4, ipv4(f"10.0.{i // 250}.{i % 250 + 1}", f"192.168.{i % 7}.{i % 200 + 1}", UDP,
                                 udp(1024 + i, 2000 + i % 50, b"\0" * 18))) for i in range(flows)]
    write_pcap(path, frames)


class Running:
    """sluice forwarding net_pcap (infinite_rx) -> net_null on lcore 1, stats every second."""

    def __init__(self, root, d, tag, mem_mib):
        self.eal = ["-l", "0,1", "--no-huge", "-m", str(mem_mib), "--no-pci", f"--file-prefix=bench-{tag}-{os.getpid()}",
                    "--log-level=lib.eal:error", "--log-level=pmd.net.pcap:error"]
        with open(f"{d}/sluice.yaml", "w") as f:
            f.write(f"ports:\n  - name: in\n    device: \"net_pcap0,rx_pcap={d}/udp64.pcap,infinite_rx=1\"\n"
                    f"  - name: out\n    device: \"net_null0,no-rx=1\"\n"
                    f"workers:\n  lcores: [1]\n  burst: 32\nflows: flows.yaml\n")
        self.p = subprocess.Popen([os.path.join(root, "build", "app", "sluice"), *self.eal, "--", "-c", f"{d}/sluice.yaml",
                                   "--stats-period", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  stdin=subprocess.DEVNULL)
        self.out = []
        self.reader = threading.Thread(target=lambda: self.out.extend(self.p.stdout), daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 120
        while not any("] running" in line for line in list(self.out)):
            if self.p.poll() is not None or time.monotonic() > deadline:
                sys.exit("bench: sluice did not start:\n" + "".join(self.out[-30:]))
            time.sleep(0.05)
        self.tel = Telemetry(self.eal)

    def rates(self):
        """Per-second RX rates of port in, from the statistics table (after 2 s of warm-up)."""
        rx = [int(x) for x in re.findall(r"\n  Rx-pps:\s+(\d+)", "".join(self.out))][0::2]
        return [r for r in rx[2:] if r > 0]

    def stop(self):
        self.tel.close()
        self.p.send_signal(signal.SIGINT)
        try:
            self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
        self.reader.join(timeout=10)
        for a in self.eal:
            if a.startswith("--file-prefix="):
                shutil.rmtree(os.path.join("/var/run/dpdk", a.split("=", 1)[1]), ignore_errors=True)


def write_flows(d, n, seed):
    with open(f"{d}/next.yaml", "w") as f:
        f.write(flows_yaml(n, seed=seed))
    os.rename(f"{d}/next.yaml", f"{d}/flows.yaml")


def reload_times(root, d, n, reloads):
    """Median parse, build, diff, publish, grace (ms) of `reloads` reloads between two n-rule sets,
    and `whole`: the reload from reading the file to the new rules published (took_us), plus its
    grace period. (Not the command's time from request to answer: back-to-back requests also
    wait for the reload rate limit, as long as the last reload took.)"""
    write_flows(d, n, 7)
    s = Running(root, d, f"rl{n}", 2048 if n >= 50000 else 1024)
    got = {"parse_us": [], "build_us": [], "diff_us": [], "publish_us": [], "grace_us": []}
    whole = []
    try:
        for i in range(reloads):
            write_flows(d, n, 8 + i % 2)
            r = s.tel.cmd("/sluice/reload", timeout=600)
            if not r or r["result"] != "ok":
                sys.exit(f"bench: reload of {n} rules: {r}")
            for k in got:
                got[k].append(r[k] / 1000)
            whole.append((r["took_us"] + r["grace_us"]) / 1000)
    finally:
        s.stop()
    out = {k[:-3]: statistics.median(v) for k, v in got.items()}
    out["whole"] = statistics.median(whole)
    out["whole_min"], out["whole_max"] = min(whole), max(whole)
    return out


def reload_rate(root, d, runs, seconds, n=1000):
    """Forwarding rate while reloading back to back, over the rate without: per run, median."""
    plain, busy, counts = [], [], []
    for run in range(runs):
        for reloading in (False, True):
            write_flows(d, n, 7)
            s = Running(root, d, f"rr{run}{int(reloading)}", 1024)
            done = [0]
            stop = threading.Event()

            def loop():
                os.sched_setaffinity(0, {0})  # this thread only: the control plane's CPU, not the worker's
                while not stop.is_set():
                    write_flows(d, n, 8 + done[0] % 2)
                    r = s.tel.cmd("/sluice/reload")
                    if not r or r["result"] != "ok":
                        break
                    done[0] += 1

            t = threading.Thread(target=loop) if reloading else None
            if t:
                t.start()
            time.sleep(seconds)
            stop.set()
            if t:
                t.join()
            s.stop()
            rates = s.rates()
            if not rates:
                sys.exit("bench: no forwarding rate:\n" + "".join(s.out[-30:]))
            (busy if reloading else plain).append(statistics.median(rates))
            if reloading:
                counts.append(done[0])
        print(f"reload rate, run {run + 1}/{runs}: {plain[-1] / 1e6:.2f} Mpps without reloads, {busy[-1] / 1e6:.2f} "
              f"Mpps with {counts[-1]} reloads in {seconds:.0f} s", file=sys.stderr)
    ratios = [b / p for b, p in zip(busy, plain)]
    return statistics.median(plain), statistics.median(busy), statistics.median(ratios), counts


def main():
    global TRACE
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rules", default="100,1000,10000,100000")
    ap.add_argument("--iter", type=int, default=100)
    ap.add_argument("--trace", type=int, default=TRACE, help="packets in the trace")
    ap.add_argument("--reloads", type=int, default=3, help="reloads timed per rule count")
    ap.add_argument("--seconds", type=float, default=6, help="per forwarding-rate run")
    ap.add_argument("--skip-reload", action="store_true", help="classify cycles only")
    args = ap.parse_args()
    TRACE = args.trace
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

        times, rate = {}, None
        if not args.skip_reload:
            udp_traffic(f"{d}/udp64.pcap")
            for n in counts:
                times[n] = reload_times(args.root, d, n, args.reloads if n < 50000 else max(1, args.reloads - 1))
                print(f"reload {n} rules: " + ", ".join(f"{k} {v:.1f} ms" for k, v in times[n].items()), file=sys.stderr)
            rate = reload_rate(args.root, d, args.runs, args.seconds)

    print(f"\nclassify: rules.py rule sets, {TRACE} packets (80% inside a rule), steps of {STEP}, 1 category, "
          f"rte_acl default algorithm, {args.runs} runs x {args.iter} iterations, A/B interleaved; "
          f"answers identical on the first {CHECKED} packets")
    print(f"{'rules':>8}{'sluice':>10}{'test-acl':>10}{'sluice/acl':>12}   cycles/packet (median)")
    for n, s, a, _ in table:
        print(f"{n:>8}{s:>10.1f}{a:>10.1f}{s / a:>12.2f}")
    if times:
        print(f"\nreload in a running sluice (1 worker forwarding), median of {args.reloads} reloads between two rule sets:")
        print(f"{'rules':>8}{'parse ms':>10}{'build ms':>10}{'diff ms':>9}{'publish ms':>12}{'grace ms':>10}"
              f"{'whole ms':>10}  {'min..max':>15}   (whole: file read to rules published, and the grace period)")
        for n, t in times.items():
            print(f"{n:>8}{t['parse']:>10.1f}{t['build']:>10.1f}{t['diff']:>9.1f}{t['publish']:>12.3f}{t['grace']:>10.3f}"
                  f"{t['whole']:>10.1f}  {t['whole_min']:>7.1f}..{t['whole_max']:<7.1f}")
    if rate:
        plain, busy, ratio_r, counts_r = rate
        print(f"\nforwarding while reloading back to back (1,000 rules, 64 B UDP, net_pcap -> net_null, {args.runs} runs x "
              f"{args.seconds:.0f} s, about {statistics.median(counts_r) / args.seconds:.0f} reloads/s): "
              f"{busy / 1e6:.2f} Mpps vs {plain / 1e6:.2f} Mpps without, ratio {ratio_r:.3f} (goal >= 0.95)")
    geo = lambda xs: statistics.geometric_mean(xs)  # noqa: E731
    s_geo, a_geo = geo([t[1] for t in table]), geo([t[2] for t in table])
    ratios = [r for t in table for r in t[3]]
    ratio = a_geo / s_geo
    spread = (max(ratios) - min(ratios)) / ratio if ratio else 0
    print(json.dumps({"suite": "classify", "unit": "cycles/pkt (geomean over rule counts)", "sluice": round(s_geo, 1),
                      "anchor": "dpdk-test-acl", "anchor_value": round(a_geo, 1), "ratio": round(ratio, 3),
                      "runs": args.runs, "spread": round(spread, 3),
                      **({"reload_rate_ratio": round(rate[2], 3)} if rate else {}),
                      **({"reload_ms": {str(n): round(t["whole"], 1) for n, t in times.items()}} if times else {})}))


if __name__ == "__main__":
    main()
