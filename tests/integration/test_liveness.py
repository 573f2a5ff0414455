#!/usr/bin/env python3
"""Liveness (issue 10, acceptance 2): a worker forced to stall (SLUICE_TEST_STALL) is in
/sluice/health within 2 s, the systemd watchdog stops being fed (a fake NOTIFY_SOCKET shows
it), and shutdown names the stuck lcore instead of hanging. A healthy run next to it: the
watchdog is fed throughout, health says ok, and the stop is clean."""
import json
import os
import re
import socket
import threading
import time

from runner import (FORWARD_ALL, Background, appliance, check, eal_args, parse_args, report, tempdir,
                    write)
from telemetry import Telemetry

STALL_AFTER_MS = 1500
WATCHDOG_USEC = 200_000  # sluice feeds it every 100 ms


class FakeSystemd:
    """The notify socket systemd gives a Type=notify service: every datagram, timestamped."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic time, text)
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.done:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            with self.lock:
                for line in data.decode(errors="replace").splitlines():
                    self.messages.append((time.monotonic(), line))

    def times(self, text):
        with self.lock:
            return [t for t, m in self.messages if m == text]

    def close(self):
        self.done = True
        self.thread.join(timeout=2)
        self.sock.close()


def health(tel):
    try:
        return tel.cmd("/sluice/health", timeout=5)
    except Exception:  # noqa: BLE001
        return None


def stalled_in(h):
    """(status, the first worker reported stalled or None) from a /sluice/health reply, whose
    per-worker values are columns (DPDK 22.11 telemetry cannot nest objects)."""
    if not isinstance(h, dict):
        return None, None
    cols = {k: h.get(f"workers/{k}") or [] for k in ("index", "lcore", "idle_ms", "stalled")}
    workers = [{k: cols[k][i] for k in cols} for i in range(len(cols["lcore"]))]
    bad = [w for w in workers if w["stalled"]]
    return h.get("status"), (bad[0] if bad else None)


def run_case(sluice, stall, tag):
    with tempdir() as d:
        write(d, "flows.yaml", FORWARD_ALL)
        cfg = write(d, "sluice.yaml", appliance([("in", "net_null0"), ("out", "net_null1,no-rx=1")]))
        stats = os.path.join(d, "stats.json")
        victim = os.path.join(d, "victim")
        if not stall:
            # --stats-out replaces a symlink planted at its target instead of following it.
            write(d, "victim", "keep")
            os.symlink(victim, stats)
        systemd = FakeSystemd(os.path.join(d, "notify.sock"))
        env = dict(os.environ, NOTIFY_SOCKET=systemd.path, WATCHDOG_USEC=str(WATCHDOG_USEC))
        env.pop("WATCHDOG_PID", None)
        if stall:
            env["SLUICE_TEST_STALL"] = f"0:{STALL_AFTER_MS}"
        else:
            env.pop("SLUICE_TEST_STALL", None)
        eal = eal_args(tag)
        b = Background(sluice, eal, ["-c", cfg, "--stats-out", stats], env=env)
        name = "stall" if stall else "healthy"
        try:
            hooked = b.wait_for(r"SLUICE_TEST_STALL: worker 0 on lcore 1 hangs", timeout=30) if stall else True
            t_hook = time.monotonic()
            check(f"{name}: the test hook is announced (only when set)", hooked == stall or not stall,
                  "".join(b.lines))
            if not stall:
                check(f"{name}: no test hook without SLUICE_TEST_STALL", b.count("SLUICE_TEST_STALL") == 0)
            check(f"{name}: running", b.wait_for(r"running", timeout=30), "".join(b.lines))
            tel = Telemetry(eal)
            h0 = health(tel)
            status0, bad0 = stalled_in(h0)
            check(f"{name}: /sluice/health is ok while the workers run", status0 == "ok" and bad0 is None,
                  json.dumps(h0))
            if stall:
                t_stall = t_hook + STALL_AFTER_MS / 1000.0
                seen_at = None
                h = None
                while time.monotonic() < t_stall + 5:
                    h = health(tel)
                    status, bad = stalled_in(h)
                    if status == "stalled" and bad is not None:
                        seen_at = time.monotonic()
                        break
                    time.sleep(0.05)
                delay = (seen_at - t_stall) if seen_at else None
                check(f"{name}: /sluice/health says stalled within 2 s of the stall "
                      f"({'never' if delay is None else f'{delay:.2f} s'})",
                      delay is not None and delay <= 2.0, json.dumps(h))
                _, bad = stalled_in(h)
                check(f"{name}: health names the stalled worker's lcore and how long it has been idle",
                      bad is not None and bad.get("lcore") == 1 and int(bad.get("idle_ms", 0)) > 1000,
                      json.dumps(h))
                check(f"{name}: the stall is logged once", b.wait_for(r"worker 0 on lcore 1: no progress for \d+ ms \(stalled\)", timeout=3),
                      "".join(b.lines))
                stats_now = tel.cmd("/sluice/stats", timeout=5)
                check(f"{name}: telemetry still answers while a worker is stalled", isinstance(stats_now, dict))
                # The watchdog: fed before the stall, not after it was seen.
                time.sleep(1.5)
                pings = systemd.times("WATCHDOG=1")
                before = [t for t in pings if t < t_stall]
                after = [t for t in pings if seen_at is not None and t > seen_at + 0.2]
                check(f"{name}: the watchdog was fed before the stall ({len(before)} pings)", len(before) >= 5)
                check(f"{name}: the watchdog is no longer fed once the worker is stalled ({len(after)} pings after)",
                      seen_at is not None and len(after) == 0)
                check(f"{name}: logged once, not per tick",
                      b.count(r"no progress for \d+ ms \(stalled\)") == 1, "".join(b.lines))
            else:
                time.sleep(2.5)
                h = health(tel)
                status, bad = stalled_in(h)
                check(f"{name}: still ok after 2.5 s", status == "ok" and bad is None, json.dumps(h))
                pings = systemd.times("WATCHDOG=1")
                check(f"{name}: the watchdog is fed throughout ({len(pings)} pings)", len(pings) >= 20)
                check(f"{name}: nothing is reported stalled", b.count(r"stalled") == 0, "".join(b.lines))
            tel.close()
            check(f"{name}: READY=1 was sent", len(systemd.times("READY=1")) == 1)
            t0 = time.monotonic()
            rc, log = b.stop(timeout=30)
            took = time.monotonic() - t0
        finally:
            if b.proc.poll() is None:
                b.proc.kill()
            systemd.close()
        check(f"{name}: stops within 10 s ({took:.1f} s), well inside TimeoutStopSec", took < 10, log)
        if stall:
            check(f"{name}: exit 3 (runtime fault)", rc == 3, f"rc={rc}\n{log}")
            check(f"{name}: shutdown names the stuck lcore",
                  re.search(r"worker 0 on lcore 1 did not stop within [\d.]+ s .*stuck", log) is not None, log)
            try:
                s = json.load(open(stats))
                w = s["workers"][0]
                check(f"{name}: --stats-out still written, worker 0 stalled in it", w["stalled"] and w["lcore"] == 1,
                      json.dumps(s["workers"]))
                check(f"{name}: health in --stats-out says stalled", s["health"]["status"] == "stalled",
                      json.dumps(s["health"]))
            except Exception as e:  # noqa: BLE001
                check(f"{name}: --stats-out still written", False, repr(e))
        else:
            check(f"{name}: exit 0", rc == 0, f"rc={rc}\n{log}")
            check(f"{name}: --stats-out replaced the symlink at its target with a file",
                  not os.path.islink(stats) and open(victim).read() == "keep" and "workers" in json.load(open(stats)),
                  open(victim).read())
            check(f"{name}: no temporary file left beside --stats-out",
                  not [f for f in os.listdir(d) if ".tmp." in f], str(os.listdir(d)))
            check(f"{name}: every mbuf returned", "mbufs returned" in log, log)


def main():
    args = parse_args()
    run_case(args.sluice, stall=False, tag="live1")
    run_case(args.sluice, stall=True, tag="live2")
    report()


if __name__ == "__main__":
    main()
