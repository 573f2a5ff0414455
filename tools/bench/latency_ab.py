#!/usr/bin/python3
"""Latency A/B at a fixed rate: the e2e path (sluice-gen -> memif -> DUT -> memif ->
sluice-gen, 64 B IPv4/UDP, sluice with N rules), one fixed-rate trial per variant, variants
interleaved, repeated; prints p50/p99/p99.9 per variant (median and min..max over repeats).

    tools/bench/latency_ab.py --rate 1000000 --repeats 5 \\
        --variant base: --variant quiet:SLUICE_X=1 --variant testpmd:@testpmd-io

A variant is NAME:ENV[,ENV...] (environment given to every process of the trial) or
NAME:@testpmd-io (the anchor instead of sluice). Used to find where latency comes from: one
suspect per environment toggle, or two build folders (--build per variant: NAME:ENV|BUILD).
"""
import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "traffic"))
sys.path.insert(0, str(ROOT / "tools" / "bench"))
import scenario  # noqa: E402
import traffic as T  # noqa: E402
from e2e import bench_scenario  # noqa: E402


def parse_variant(text):
    name, _, rest = text.partition(":")
    rest, _, build = rest.partition("|")
    dut = "sluice"
    env = {}
    for item in filter(None, rest.split(",")):
        if item.startswith("@"):
            dut = item[1:]
        else:
            k, _, v = item.partition("=")
            env[k] = v
    return {"name": name, "dut": dut, "env": env, "build": build or None}


def dut_pid(binary):
    """The pid of this run's DUT (its --file-prefix starts with tt<our pid>), or None."""
    mark = f"--file-prefix=tt{os.getpid()}".encode()
    for pid, args in T.processes():
        if args and args[0].endswith(binary.encode()) and any(a.startswith(mark) for a in args):
            return int(pid)
    return None


def thread_stats(pid):
    """{thread name: (ns on CPU, times scheduled in)} from /proc/PID/task/*/schedstat."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            run_ns, _, slices = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
        except (OSError, ValueError):
            continue
        a, b = out.get(name, (0, 0))
        out[name] = (a + int(run_ns), b + int(slices))
    return out


class Sampler(threading.Thread):
    """While a trial runs: the DUT's threads' CPU time and wake-ups over `window` seconds,
    starting 1 s after it appears (not its start-up)."""

    def __init__(self, binary, window):
        super().__init__(daemon=True)
        self.binary, self.window, self.result, self.stop = binary, window, None, False

    def run(self):
        pid = None
        while not self.stop and pid is None:
            pid = dut_pid(self.binary)
            time.sleep(0.05)
        if pid is None:
            return
        try:
            time.sleep(1.0)
            a = thread_stats(pid)
            t0 = time.monotonic()
            time.sleep(self.window)
            b = thread_stats(pid)
            dt = time.monotonic() - t0
        except OSError:
            return
        self.result = {n: ((b[n][0] - a.get(n, (0, 0))[0]) / 1e3 / dt, (b[n][1] - a.get(n, (0, 0))[1]) / dt)
                       for n in b}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, required=True, help="pps")
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--flows", type=int, default=1)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--variant", action="append", required=True)
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--out", default="/tmp/sluice-latency-ab")
    args = ap.parse_args()
    variants = [parse_variant(v) for v in args.variant]
    got = {v["name"]: [] for v in variants}
    base_env = dict(os.environ)
    for r in range(args.repeats):
        for v in variants:
            os.environ.clear()
            os.environ.update(base_env)
            os.environ.update(v["env"])
            scn = bench_scenario(v["dut"], args.flows, args.rules)
            # A fixed-rate trial of the bench: no loss expected, so a failing trial shows.
            scn["generator"].update({"rate": int(args.rate), "duration": args.duration, "retry": False})
            sampler = Sampler("sluice" if v["dut"] == "sluice" else "dpdk-testpmd", max(0.5, args.duration - 1.5))
            sampler.start()
            with contextlib.redirect_stdout(sys.stderr):
                rc, rep = scenario.run(scn, "trial", Path(args.out) / f"{v['name']}-{r}", v["build"] or args.build,
                                       want_plot=False)
            sampler.stop = True
            sampler.join()
            if not rep.get("trials"):
                sys.exit(f"latency_ab: {v['name']} failed: {rep.get('error')}")
            t = rep["trials"][0]
            lat = t["latency_ns"]
            got[v["name"]].append(t)
            print(f"repeat {r + 1} {v['name']:>10}: p50 {lat.get('p50', 0) / 1e3:7.1f} p99 {lat.get('p99', 0) / 1e3:7.1f} "
                  f"p99.9 {lat.get('p999', 0) / 1e3:7.1f} max {lat.get('max', 0) / 1e3:8.1f} us, "
                  f"lost {t['lost']}, offered {t['offered_pps']:,.0f} pps", flush=True)
            if sampler.result:
                busy = {n: x for n, x in sampler.result.items() if x[0] < 500_000}  # not the polling lcore
                t["threads"] = busy
                print("    DUT threads other than its busy lcore (us on CPU per s / wake-ups per s): " +
                      ", ".join(f"{n} {x[0]:.0f}/{x[1]:.0f}" for n, x in sorted(busy.items())), flush=True)
    os.environ.clear()
    os.environ.update(base_env)
    print(f"\n{args.rate:,.0f} pps, {args.flows} flow(s), {args.duration:g} s trials, {args.repeats} repeats "
          "interleaved; median (min..max) in us")
    for v in variants:
        ts = got[v["name"]]
        cells = []
        for key in ("p50", "p99", "p999", "max"):
            xs = [t["latency_ns"].get(key, 0) / 1e3 for t in ts]
            cells.append(f"{key} {statistics.median(xs):6.1f} ({min(xs):.1f}..{max(xs):.1f})")
        print(f"{v['name']:>10}: " + "  ".join(cells) + f"  lost {sum(t['lost'] for t in ts)}")
        names = sorted({n for t in ts for n in t.get("threads", {})})
        if names:
            print(" " * 12 + "other threads, us/s and wake-ups/s (median): " + ", ".join(
                f"{n} {statistics.median(t['threads'].get(n, (0, 0))[0] for t in ts):.0f}/"
                f"{statistics.median(t['threads'].get(n, (0, 0))[1] for t in ts):.0f}" for n in names))


if __name__ == "__main__":
    main()
