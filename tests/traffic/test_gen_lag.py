#!/usr/bin/python3
"""sluice-gen's --max-lag-us: a paced sender whose CPU is taken away (SIGSTOP for 0.3 s in a
2 s run at 1 Mpps, on net_null, no hugepages) skips what it fell behind by beyond the bound,
counted as tx.skipped and not offered; without the option it makes everything up at once
(the old behaviour), skipping nothing. The NDR/PDR search's trials use the bound so that a
stall of the generator's own CPU is not dumped on the DUT in one burst.

Prints PASS/FAIL lines and "N passed, N failed" last."""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

RATE, SECONDS, STOP = 1_000_000, 2.0, 0.3
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'}: {name}" + ("" if ok or not detail else f"\n      {detail}"), flush=True)


def run(gen, d, lag):
    out = os.path.join(d, f"lag{lag}.json")
    cmd = [gen, "-l", "0,1", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", f"--file-prefix=genlag{lag}-{os.getpid()}",
           "--vdev", "net_null0", "--log-level=lib.eal:error", "--", "--mode", "txonly", "--tx-port", "0",
           "--rx-port", "none", "--rate", str(RATE), "--duration", str(SECONDS), "--json-out", out]
    if lag:
        cmd += ["--max-lag-us", str(lag)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Stop it once it is sending (its "running" line), in the middle of the run.
    start = time.monotonic()
    line = ""
    while "running:" not in line and time.monotonic() - start < 30:
        line = p.stdout.readline()
        if not line and p.poll() is not None:
            break
    time.sleep(0.6)
    p.send_signal(signal.SIGSTOP)
    time.sleep(STOP)
    p.send_signal(signal.SIGCONT)
    rest, _ = p.communicate(timeout=60)
    try:
        tx = json.load(open(out))["tx"]
    except (OSError, ValueError, KeyError):
        tx = None
    return p.returncode, tx, rest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    opt = ap.parse_args()
    gen = os.path.join(opt.build, "tools", "sluice-gen")
    due = RATE * SECONDS
    with tempfile.TemporaryDirectory(prefix="sluice-gen-lag-") as d:
        rc, tx, out = run(gen, d, 100)
        check("--max-lag-us 100: exit 0 and results", rc == 0 and tx is not None, f"rc={rc}\n{out[-1500:]}")
        if tx:
            check(f"--max-lag-us 100: about the stall's {STOP * RATE:.0f} packets skipped ({tx['skipped']})",
                  0.8 * STOP * RATE <= tx["skipped"] <= 1.5 * STOP * RATE, json.dumps(tx))
            check("--max-lag-us 100: skipped packets are not offered (attempted + skipped = what was due)",
                  abs(tx["attempted"] + tx["skipped"] - due) <= 0.01 * due, json.dumps(tx))
            check("--max-lag-us 100: the log says what was skipped", "skipped (the sender fell behind" in out, out[-800:])
        rc, tx, out = run(gen, d, 0)
        check("without it: exit 0 and results", rc == 0 and tx is not None, f"rc={rc}\n{out[-1500:]}")
        if tx:
            check("without it: nothing skipped, everything due offered (made up at once)",
                  tx["skipped"] == 0 and abs(tx["attempted"] - due) <= 0.01 * due, json.dumps(tx))
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
