#!/usr/bin/env python3
"""The benchmark tools tools/bench/run drives still run to the end: a short pass of each, on
--no-huge, with its own correctness checks. A bench that crashes at exit or whose frames no
longer validate as the reference says fails here, not on the day someone wants its numbers
(sluice-bench-ring once freed its hand-off stages after rte_eal_cleanup and died with SIGSEGV
after printing nothing).

- sluice-bench-ring: every figure printed (ring, handoff, hash, hash_mixed as positive cycle
  counts), nothing refused, exit 0.
- sluice-bench-classify: 100 rules and a trace of 4,096 packets: a cycles figure, and each
  packet's answer in --results equal to a first-match search in Python over the rules in rank
  order (most packets are drawn inside a rule, so an all-miss answer fails).
- sluice-bench-stages: BM_Worker and BM_Validate/BM_ValidateMbufs on udp64 for every kernel,
  at a minimum time; none may report an error (each checks its keys, hashes and verdicts
  against the scalar reference before timing, and BM_Worker that every burst came back whole).
- tools/bench/run --help: exit 0, on stdout, every suite the script runs, and each option it
  lists for a suite is one that suite's script takes; no suite or an unknown one: exit 2 with
  the usage on stderr.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "bench"))
from classify import ip_int, trace  # noqa: E402
from rules import PROTO, flows_yaml, rank_order, rule_list  # noqa: E402
from runner import check, report  # noqa: E402


def reference(rules, trace_text):
    """Each trace packet's answer as sluice-bench-classify writes it: its winning rule's position
    in rank order, 4294967295 for none."""
    order = rank_order(rules)

    def cidr(c):
        net, plen = c.split("/")
        mask = (0xFFFFFFFF << (32 - int(plen))) & 0xFFFFFFFF
        return ip_int(net) & mask, mask

    ranked = [(cidr(rules[i]["src"]), cidr(rules[i]["dst"]), rules[i]["dport"], PROTO[rules[i]["proto"]])
              for i in order]
    out = []
    for line in trace_text.split("\n"):
        if not line:
            continue
        src, dst, _sport, dport, proto = (int(x) for x in line.split())
        answer = 4294967295
        for pos, ((sn, sm), (dn, dm), (lo, hi), p) in enumerate(ranked):
            if p == proto and src & sm == sn and dst & dm == dn and lo <= dport <= hi:
                answer = pos
                break
        out.append(answer)
    return out


def run_help():
    """tools/bench/run's --help against the script itself (no suite is run)."""
    bench = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "bench")
    run = os.path.join(bench, "run")
    with open(run) as f:
        cases = re.findall(r"^  ([a-z0-9]+)\)", f.read(), re.M)
    for form in ("--help", "-h"):
        p = subprocess.run(["bash", run, form], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        check(f"tools/bench/run {form}: exit 0, on stdout, nothing on stderr",
              p.returncode == 0 and p.stdout.startswith("usage: tools/bench/run SUITE") and p.stderr == "",
              f"rc={p.returncode} {p.stdout!r} {p.stderr!r}")
    listed, suite = {}, None
    for line in p.stdout.split("suites:\n", 1)[-1].splitlines():
        m = re.match(r"^  ([a-z0-9]+)  ", line)
        if m:
            suite = m.group(1)
            listed[suite] = []
        elif not line.startswith("            "):
            suite = None
        if suite:
            listed[suite] += re.findall(r"\[(--[a-z-]+)", line) + re.findall(r"\| (--[a-z-]+)", line)
    check(f"tools/bench/run --help lists every suite the script runs ({', '.join(cases)})",
          cases and sorted(listed) == sorted(cases), f"listed {sorted(listed)}, script {sorted(cases)}")
    for name, opts in sorted(listed.items()):
        if name == "all":
            continue
        try:
            with open(os.path.join(bench, f"{name}.py")) as f:
                script = f.read()
        except OSError as e:
            check(f"tools/bench/run --help: {name}'s script", False, str(e))
            continue
        unknown = [o for o in opts if f'"{o}"' not in script]
        check(f"tools/bench/run --help: {name}'s options ({' '.join(opts)}) are {name}.py's",
              opts and not unknown, f"not in {name}.py: {unknown}")
    for argv in ([], ["bogus"], ["--bogus"]):
        p = subprocess.run(["bash", run, *argv], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        check(f"tools/bench/run {' '.join(argv) or '(no suite)'}: exit 2, the usage on stderr",
              p.returncode == 2 and p.stdout == "" and "usage: tools/bench/run SUITE" in p.stderr,
              f"rc={p.returncode} {p.stdout!r} {p.stderr!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, help="the build folder")
    args = ap.parse_args()

    run_help()

    ring = os.path.join(args.build, "tools", "sluice-bench-ring")
    p = subprocess.run([ring, "--no-huge", "-m", "256", "--no-pci", "-l", "0", "--no-shconf", "--no-telemetry",
                        f"--file-prefix=t-bench-ring-{os.getpid()}", "--log-level=lib.eal:error", "--",
                        "--reps", "1", "--iterations", "65536"],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    # EAL leaves its (empty) runtime folder behind, even with --no-shconf.
    shutil.rmtree(f"/var/run/dpdk/t-bench-ring-{os.getpid()}", ignore_errors=True)
    vals = dict(re.findall(r"^(ring|handoff|hash|hash_mixed|refused) ([0-9.]+)$", p.stdout, re.M))
    check(f"sluice-bench-ring exits 0 (got {p.returncode})", p.returncode == 0, p.stdout + p.stderr)
    check("sluice-bench-ring prints ring, handoff, hash and hash_mixed, each > 0",
          all(float(vals.get(k, 0)) > 0 for k in ("ring", "handoff", "hash", "hash_mixed")), p.stdout)
    check("sluice-bench-ring: no packet refused", vals.get("refused") == "0", p.stdout)

    cls = os.path.join(args.build, "tools", "sluice-bench-classify")
    with tempfile.TemporaryDirectory(prefix="sluice-t-bench-") as d:
        rules = rule_list(100)
        with open(f"{d}/flows.yaml", "w") as f:
            f.write(flows_yaml(100, rules=rules))
        packets = trace(rules, 4096)
        with open(f"{d}/trace.txt", "w") as f:
            f.write(packets)
        p = subprocess.run([cls, "--flows", f"{d}/flows.yaml", "--trace", f"{d}/trace.txt", "--iter", "2",
                            "--step", "32", "-m", "256", "--results", f"{d}/results.txt"],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        check(f"sluice-bench-classify exits 0 (got {p.returncode})", p.returncode == 0, p.stdout + p.stderr)
        m = re.search(r"([\d.]+) cycles/pkt", p.stdout)
        check("sluice-bench-classify prints its cycles per packet", m is not None and float(m.group(1)) > 0,
              p.stdout)
        answers = open(f"{d}/results.txt").read().split() if os.path.exists(f"{d}/results.txt") else []
        want = reference(rules, packets)
        got = [int(a) for a in answers]
        wrong = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
        check(f"sluice-bench-classify: each of the 4096 packets' answers is the first match in rank order "
              f"({len(got)} answers, {len(wrong)} wrong, {sum(w != 4294967295 for w in want)} packets match a rule)",
              len(got) == len(want) and not wrong,
              f"first wrong: packet {wrong[0]}: got {got[wrong[0]]}, want {want[wrong[0]]}" if wrong else "")

    stages = os.path.join(args.build, "tools", "sluice-bench-stages")
    if not os.path.exists(stages):
        print("SKIPPED: sluice-bench-stages was not built (Google Benchmark not found)")
    else:
        p = subprocess.run([stages, "--benchmark_filter=^BM_Worker/|^BM_Validate(Mbufs)?/udp64/",
                            "--benchmark_min_time=0.01", "--benchmark_format=json"],
                           capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        check(f"sluice-bench-stages exits 0 (got {p.returncode})", p.returncode == 0, p.stderr)
        try:
            runs = json.loads(p.stdout)["benchmarks"]
        except (ValueError, KeyError):
            runs = []
        names = [b["name"] for b in runs]
        check(f"sluice-bench-stages ran BM_Worker and both validate entries ({len(names)} runs)",
              any(n.startswith("BM_Worker/") for n in names) and any(n.startswith("BM_Validate/") for n in names)
              and any(n.startswith("BM_ValidateMbufs/") for n in names), p.stdout + p.stderr)
        for b in runs:
            check(f"{b['name']}: no error", not b.get("error_occurred"), b.get("error_message", ""))

    report()


if __name__ == "__main__":
    main()
