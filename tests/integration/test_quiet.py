#!/usr/bin/env python3
"""A quiet control plane (issue 11): the main lcore sleeps until there is work. While sluice
forwards and nobody asks for statistics, its main thread is scheduled in at most a few times a
second (the liveness sample every 250 ms; it was 50 a second on a 20 ms tick, each costing a
CPU tens of microseconds). Statistics are built when asked: two /sluice/stats 300 ms apart see
the uptime and the counters move by as much (no stale copy of a fixed tick), and a burst of
requests is answered promptly."""
import os
import time

from runner import Background, FORWARD_ALL, appliance, check, eal_args, parse_args, report, tempdir, write
from telemetry import Telemetry

WINDOW_S = 3.0
MAX_WAKEUPS_PER_S = 8  # 4 liveness samples a second, and room for a signal or a stray wake


def schedstat(pid, tid):
    """(ns on CPU, times scheduled in) of one thread."""
    run_ns, _, slices = open(f"/proc/{pid}/task/{tid}/schedstat").read().split()
    return int(run_ns), int(slices)


def main():
    args = parse_args()
    pcap = os.path.join(args.data, "mixed.pcap")
    with tempdir() as d:
        write(d, "flows.yaml", FORWARD_ALL)
        cfg = write(d, "sluice.yaml", appliance(
            [("in", f"net_pcap0,rx_pcap={pcap},infinite_rx=1"), ("out", "net_null0,no-rx=1")]))
        eal = eal_args("quiet")
        b = Background(args.sluice, eal, ["-c", cfg])
        try:
            check("running", b.wait_for(r"running", timeout=60), "".join(b.lines)[-3000:])
            pid = b.proc.pid
            time.sleep(1.0)  # past start-up
            ns0, n0 = schedstat(pid, pid)
            t0 = time.monotonic()
            time.sleep(WINDOW_S)
            ns1, n1 = schedstat(pid, pid)
            dt = time.monotonic() - t0
            wakeups, cpu_us = (n1 - n0) / dt, (ns1 - ns0) / 1e3 / dt
            print(f"main thread with nobody asking: {wakeups:.1f} wake-ups/s, {cpu_us:.0f} us on CPU per s")
            check(f"the main lcore sleeps until there is work (<= {MAX_WAKEUPS_PER_S} wake-ups/s, saw {wakeups:.1f})",
                  wakeups <= MAX_WAKEUPS_PER_S)

            tel = Telemetry(eal)
            a = tel.cmd("/sluice/stats", timeout=5)
            time.sleep(0.3)
            t1 = time.monotonic()
            z = tel.cmd("/sluice/stats", timeout=5)
            took = time.monotonic() - t1
            moved = (z or {}).get("uptime_ms", 0) - (a or {}).get("uptime_ms", 0)
            check(f"statistics built when asked: uptime moved {moved} ms in 300 ms", 250 <= moved <= 450, (a, z))
            check("the counters moved between the two requests",
                  (z or {}).get("default/packets", 0) > (a or {}).get("default/packets", 0), (a, z))
            check(f"a request is answered promptly ({took * 1e3:.0f} ms)", took < 0.5)
            t2 = time.monotonic()
            replies = [tel.cmd(c, timeout=5) for c in ("/sluice/stats", "/sluice/drops", "/sluice/workers",
                                                      "/sluice/health", "/sluice/ports") * 4]
            burst = time.monotonic() - t2
            check(f"20 requests in a row answered in {burst * 1e3:.0f} ms (< 2 s)",
                  all(isinstance(r, (dict, list)) for r in replies) and burst < 2.0, replies[:3])
            tel.close()
        finally:
            rc, log = b.stop(timeout=30)
        check("exit 0", rc == 0, log[-3000:])
    report()


if __name__ == "__main__":
    main()
