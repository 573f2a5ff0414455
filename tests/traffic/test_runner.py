#!/usr/bin/python3
"""tools/traffic-test itself: a fault mid-trial (sluice-gen killed, sluice killed, the runner
told to stop) is reported clearly and leaves nothing behind; an NDR search runs with short
trials and writes its report and plot; a bad scenario is a usage error naming the key.

Prints PASS/FAIL lines and "N passed, N failed" last; exit 77 (SKIPPED) without hugepages.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "traffic"))
import traffic as T  # noqa: E402

RUNNER = ROOT / "tools" / "traffic-test"
SCENARIO = Path(__file__).resolve().parent / "forward-all.yaml"
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'}: {name}" + ("" if ok or not detail else f"\n      {detail}"), flush=True)


def nothing_left(tag, output):
    """No process, runtime folder, hugepage file or temp folder of the run is left."""
    prefixes = re.findall(r"\(prefix (\S+)\)", output)
    tmp = re.search(r"temp folder (\S+),", output)
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        left += [f"process {pid}" for p in prefixes if f"--file-prefix={p}".encode() in args]
    for p in prefixes:
        if (T.runtime_dir() / p).exists():
            left.append(str(T.runtime_dir() / p))
        left += [str(f) for f in T.HUGEPAGES.glob(f"{p}*")]
    if tmp and Path(tmp.group(1)).exists():
        left.append(tmp.group(1))
    check(f"{tag}: nothing left behind ({len(prefixes)} prefixes, temp folder, sockets)",
          prefixes and tmp and not left, "; ".join(left) or f"prefixes {prefixes}, temp {tmp}")


def fault(build, victim, out):
    """Starts a long trial, hurts `victim` once traffic flows, checks the report."""
    p = subprocess.Popen([str(RUNNER), str(SCENARIO), "--duration", "60", "--out", str(out), "--build", build,
                          "--no-plot"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, pids = [], None
    deadline = time.monotonic() + 60
    for line in p.stdout:
        lines.append(line)
        m = re.search(r"trial running: .*\(sluice pid (\d+), sluice-gen pid (\d+)\)", line)
        if m:
            pids = {"sluice": int(m.group(1)), "sluice-gen": int(m.group(2))}
            break
        if time.monotonic() > deadline:
            break
    if not pids:
        p.kill()
        check(f"kill {victim}: the trial started", False, "".join(lines)[-2000:])
        return
    time.sleep(1.5)  # traffic flowing
    if victim == "runner":
        p.send_signal(signal.SIGTERM)
    else:
        os.kill(pids[victim], signal.SIGKILL)
    try:
        rest, _ = p.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        p.kill()
        rest, _ = p.communicate()
    output = "".join(lines) + rest
    check(f"kill {victim}: the runner exits 1", p.returncode == 1, f"rc={p.returncode}\n{output[-2000:]}")
    if victim == "runner":
        want = rf"FAIL: forward-all: interrupted"
    else:
        want = rf"FAIL: forward-all: {re.escape(victim)} \(pid {pids[victim]}\) killed by SIGKILL during the trial"
    check(f"kill {victim}: the failure names it, its pid and the signal", re.search(want, output), output[-2500:])
    report = json.loads((out / "report.json").read_text())
    check(f"kill {victim}: report.json says failed, with the reason", not report["ok"] and report["error"],
          json.dumps(report)[:500])
    nothing_left(f"kill {victim}", output)


def search(build, out):
    t0 = time.monotonic()
    # Zero loss through a 1.5 s final on two shared vCPUs is a coin toss near the limit (a CI
    # run lost 0.09-0.29% in its finals at 2.5 Mpps, 2.9 Mpps having passed a 0.5 s trial, and
    # reported no rate): a failing trial confirmed twice and a 1 s final keep this a test of
    # the runner, not of the VM's stalls.
    p = subprocess.run([str(RUNNER), str(SCENARIO), "--mode", "ndr", "--trial", "0.5", "--resolution", "0.25",
                        "--confirm", "2", "--final", "1", "--out", str(out), "--build", build],
                       capture_output=True, text=True, timeout=300)
    output = p.stdout + p.stderr
    print(output[-1500:])
    check("ndr search: exit 0 and expectations pass", p.returncode == 0, output[-2000:])
    report = json.loads((out / "report.json").read_text())
    res = report.get("result", {})
    trials = report.get("trials", [])
    check("ndr search: a rate found, below the unpaced upper bound",
          0 < res.get("rate_pps", 0) <= res.get("upper_bound_pps", 0), json.dumps(res))
    check("ndr search: the reported rate passed with zero loss",
          any(t["rate_pps"] == res.get("rate_pps") and t["lost"] == 0 for t in trials) or
          res.get("rate_pps") == res.get("upper_bound_pps"), json.dumps(trials)[:1500])
    check("ndr search: latency measured at half the rate", res.get("latency_at_half", {}).get("p99", 0) > 0,
          json.dumps(res))
    png = out / "report.png"
    check("ndr search: plot written (PNG)", png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n")
    nothing_left("ndr search", output)
    print(f"(search took {time.monotonic() - t0:.0f} s)")


def bad_scenario(build, tmp):
    bad = Path(tmp) / "bad.yaml"
    bad.write_text("name: bad\ntopology: { ports: [wan, lan], colour: blue }\ngenerator: {}\nsluice: { rules: 1 }\n")
    p = subprocess.run([str(RUNNER), str(bad), "--build", build], capture_output=True, text=True, timeout=60)
    check("bad scenario: exit 2 naming the file and the unknown key",
          p.returncode == 2 and "bad.yaml" in p.stderr and "colour" in p.stderr, f"rc={p.returncode} {p.stderr}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-tt-test-") as tmp:
        bad_scenario(args.build, tmp)
        try:
            T.require_hugepages(3 * 128 + 64)
        except T.Skip as e:
            print(f"SKIPPED: traffic runner tests: {e}")
            sys.exit(77)
        for victim in ("sluice-gen", "sluice", "runner"):
            fault(args.build, victim, Path(tmp) / f"kill-{victim}")
        search(args.build, Path(tmp) / "search")
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if results and all(results) else 1)


if __name__ == "__main__":
    main()
