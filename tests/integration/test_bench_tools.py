#!/usr/bin/env python3
"""The benchmark tools tools/bench/run drives still run to the end: a short pass of each, on
--no-huge, with its own correctness checks. A bench that crashes at exit or whose frames no
longer validate as the reference says fails here, not on the day someone wants its numbers
(sluice-bench-ring once freed its hand-off stages after rte_eal_cleanup and died with SIGSEGV
after printing nothing).

- sluice-bench-ring: every figure printed (ring, handoff, hash, hash_mixed as positive cycle
  counts), nothing refused, exit 0.
- sluice-bench-classify: 100 rules and a trace of 4,096 packets: a cycles figure, and one answer
  per packet in --results.
- sluice-bench-stages: BM_Worker and BM_Validate/BM_ValidateMbufs on udp64 for every kernel,
  at a minimum time; none may report an error (each checks its keys, hashes and verdicts
  against the scalar reference before timing, and BM_Worker that every burst came back whole).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "bench"))
from classify import trace  # noqa: E402
from rules import flows_yaml, rule_list  # noqa: E402

failures = 0


def check(what, ok, detail=""):
    global failures
    print(("PASS: " if ok else "FAIL: ") + what)
    if not ok:
        failures += 1
        if detail:
            print(detail[-3000:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, help="the build folder")
    args = ap.parse_args()

    ring = os.path.join(args.build, "tools", "sluice-bench-ring")
    p = subprocess.run([ring, "--no-huge", "-m", "256", "--no-pci", "-l", "0",
                        f"--file-prefix=t-bench-ring-{os.getpid()}", "--log-level=lib.eal:error", "--",
                        "--reps", "1", "--iterations", "65536"],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
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
        with open(f"{d}/trace.txt", "w") as f:
            f.write(trace(rules, 4096))
        p = subprocess.run([cls, "--flows", f"{d}/flows.yaml", "--trace", f"{d}/trace.txt", "--iter", "2",
                            "--step", "32", "-m", "256", "--results", f"{d}/results.txt"],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        check(f"sluice-bench-classify exits 0 (got {p.returncode})", p.returncode == 0, p.stdout + p.stderr)
        m = re.search(r"([\d.]+) cycles/pkt", p.stdout)
        check("sluice-bench-classify prints its cycles per packet", m is not None and float(m.group(1)) > 0,
              p.stdout)
        answers = open(f"{d}/results.txt").read().split() if os.path.exists(f"{d}/results.txt") else []
        check(f"sluice-bench-classify: one answer per packet ({len(answers)} of 4096)", len(answers) == 4096)

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

    print(f"{failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
