#!/usr/bin/python3
"""Port counters that never go backwards (issue 10, acceptance 4; CONTRACT "Operations").

testpmd txonly -> memif -> sluice wan -> lan -> memif -> testpmd rxonly. Mid-run the txonly
peer is killed under load (SIGKILL: its socket closes at once, and net_memif in sluice hides
wan's counters: DPDK's own /ethdev/stats shows 0), `dpdk-proc-info --stats-reset` clears lan's
counters (a real reset, link up), and a new txonly peer connects (net_memif shows wan's old
counters again, grown). Then the peers leave before sluice: the second txonly stops sending,
the path drains, it quits (printing its totals); rxonly likewise. Throughout, sluice's
/sluice/port counters (telemetry, sampled every 50 ms) never decrease, and at the end:

    wan after the kill (R1) >= the last count net_memif showed before it hid them
    wan rx_packets == the count net_memif shows once reconnected and drained (no double count)
    wan rx_packets == R1 + the second txonly's TX-packets
    lan tx_packets == rxonly's RX-packets
    wan rx_packets == lan tx_packets + tx_full                (testpmd floods; lan overflows)
    bytes          == 64 a packet (testpmd's txonly frame)

The first check is the one a sluice that counted RX from the driver's readings alone would
fail: it reads them every 500 ms, and a killed peer takes the rest with it. (A killed peer's
own totals are not known, and it leaves up to a ring of packets nobody receives.)

sluice runs without --huge-unlink (dpdk-proc-info is a secondary process; it maps sluice's
hugepage files); the Session removes them and the runtime folders afterwards.
Prints PASS/FAIL lines and "N passed, N failed" last; exit 77 (SKIPPED) without hugepages.
"""
import argparse
import json
import re
import shutil
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tools" / "traffic"))
sys.path.insert(0, str(HERE.parent / "integration"))
import traffic as T  # noqa: E402
from runner import check, report  # noqa: E402
from telemetry import Telemetry  # noqa: E402

FIELDS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "rx_missed", "rx_nombuf", "tx_errors")
FRAME = 64  # testpmd txonly's default packet, as DPDK counts it (no FCS)


class Sampler:
    """Reads sluice's port counters (and DPDK's own view of wan) over telemetry until stopped."""

    def __init__(self, eal, wan_id):
        self.tel = Telemetry(eal)
        self.wan_id = wan_id
        self.samples = []  # (seconds, {port: counters}, /ethdev/stats of wan)
        self.error = None
        self.done = threading.Event()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while not self.done.is_set():
                ports = {p: self.tel.cmd(f"/sluice/port,{p}", timeout=10) for p in ("wan", "lan")}
                raw = self.tel.cmd(f"/ethdev/stats,{self.wan_id}", timeout=10)
                self.samples.append((time.monotonic() - self.t0, ports, raw))
                time.sleep(0.05)
        except (OSError, ValueError) as e:  # sluice stopped: the socket closes
            if not self.done.is_set():
                self.error = f"{type(e).__name__}: {e}"

    def stop(self):
        self.done.set()
        self.thread.join(timeout=15)
        self.tel.close()

    def decreases(self):
        """Every (port, field, before, after, at) where a counter went down between samples."""
        out, last = [], {}
        for t, ports, _ in self.samples:
            for p, c in ports.items():
                if c is None:
                    continue
                for f in FIELDS:
                    key = (p, f)
                    if key in last and c[f] < last[key]:
                        out.append((p, f, last[key], c[f], round(t, 2)))
                    last[key] = c[f]
        return out


def peer(s, bins, place, name, sock, mode):
    # Main and forwarding lcore both on the generator's CPU: nothing of testpmd's may take the
    # CPU of sluice's worker, least of all its exit, when the worker must drain the ring before
    # the disconnect. (DPDK 22.11's net_memif unmaps the rings under a worker caught in a burst;
    # sluice's munmap on the interrupt thread waits the worker out, lib/port/ports.cpp.)
    return T.Testpmd(s, name, bins, s.prefix(name), place["gen_worker"], place["gen_worker"], 128,
                     [T.memif(0, "client", sock, 12)], mode)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    args = ap.parse_args()
    try:
        T.require_hugepages(3 * 128 + 64)  # sluice and two testpmd at a time
    except T.Skip as e:
        print(f"SKIPPED: memif reconnect: {e}")
        sys.exit(77)
    bins = T.Binaries(args.build)
    s = T.Session("memifreconn", Path(args.build) / "tests" / "traffic" / "memif-reconnect")
    place = T.placement()
    sampler = None
    try:
        sock = {p: s.tmp / f"{p}.sock" for p in ("wan", "lan")}
        flows = s.tmp / "flows.yaml"
        T.forward_all(flows, "lan")
        cfg = T.sluice_config(s.tmp / "sluice.yaml",
                              [(p, T.memif(i, "server", sock[p], 12)) for i, p in enumerate(("wan", "lan"))], flows)
        stats_path = s.tmp / "stats.json"
        prefix = s.prefix("sluice")
        eal = [a for a in T.eal(prefix, place["dut_main"], place["dut_worker"], 128) if a != "--huge-unlink"]
        sluice = s.start("sluice", [bins.sluice, *eal, "--", "-c", cfg, "--stats-out", stats_path], prefix)
        s.wait_until(lambda: all(p.exists() for p in sock.values()), 30, [sluice], "waiting for sluice's sockets")
        rx = peer(s, bins, place, "testpmd-rx", sock["lan"], "rxonly")
        tx1 = peer(s, bins, place, "testpmd-tx1", sock["wan"], "txonly")
        rx.ready()
        tx1.ready()
        s.wait_until(lambda: "[info] running" in sluice.output(), 40, [sluice, rx.proc, tx1.proc],
                     "waiting for sluice to forward")
        wan_id = int(re.search(r"port (\d+) 'wan'", sluice.output()).group(1))
        sampler = Sampler(eal, wan_id)
        rx.start()
        tx1.start()
        time.sleep(2.0)
        tx1.proc.signal(T.signal.SIGKILL)  # a crash: no goodbye, the socket closes at once
        tx1.proc.wait(10)
        time.sleep(1.0)  # lan drains into rxonly; sluice reads its counters with wan down
        shown = max((raw["ipackets"] for _, _, raw in sampler.samples if raw), default=0)

        # A real reset of the driver's counters, links up (lan): what sluice counted stays.
        reset = s.start("proc-info", [shutil.which("dpdk-proc-info") or "/usr/bin/dpdk-proc-info",
                                      f"--file-prefix={prefix}", "--no-pci", "--log-level=lib.eal:error",
                                      "--", "--stats-reset"])
        reset.wait(30)
        check("dpdk-proc-info --stats-reset ran against sluice", reset.returncode == 0,
              f"{reset.exit_text()}\n{reset.tail()}")
        s.wait_until(lambda: "port 'lan': the driver reset its counters" in sluice.output(), 10, [sluice],
                     "waiting for sluice to see lan's counters reset")
        time.sleep(0.6)  # a telemetry snapshot after the reset
        r1 = sampler.samples[-1][1]["wan"]["rx_packets"]

        tx2 = peer(s, bins, place, "testpmd-tx2", sock["wan"], "txonly")
        tx2.ready()
        tx2.start()
        time.sleep(2.0)
        sent2 = tx2.stop()[0]
        time.sleep(1.0)  # drain: sluice takes what is in wan's ring, testpmd-rx what is in lan's
        got = rx.stop()[0]
        final_shown = sampler.samples[-1][2]["ipackets"]  # both links still up
        tx2.quit()
        rx.quit()
        time.sleep(1.0)  # sluice reads its counters with both links down
        sampler.stop()
        sluice.signal(T.signal.SIGTERM)
        sluice.wait(30)
        check("sluice exits 0", sluice.returncode == 0, f"{sluice.exit_text()}\n{sluice.tail()}")
        st = T.load_json(stats_path, "sluice --stats-out")
        wan, lan = st["ports"]["wan"], st["ports"]["lan"]
        print(f"testpmd-tx2 {sent2}, testpmd-rx {got}; net_memif showed {shown} before the kill, "
              f"{final_shown} at the end; sluice wan after the kill {r1}, "
              f"final wan {wan}, lan {lan}, tx_full {st['drops']['tx_full']}; "
              f"{len(sampler.samples)} telemetry samples")

        check(f"traffic flowed through both txonly peers ({r1} + {sent2['tx']} packets)",
              r1 > 10000 and sent2["tx"] > 10000 and sent2["tx"] == sent2["tx_total"] - sent2["tx_dropped"])
        check("telemetry sampled the whole run", not sampler.error and len(sampler.samples) > 40,
              sampler.error or f"{len(sampler.samples)} samples")
        hidden = [(t, p["wan"]["rx_packets"]) for t, p, raw in sampler.samples
                  if raw and raw["ipackets"] == 0 and p["wan"] and p["wan"]["rx_packets"] > 0]
        check("while the txonly peer was away net_memif showed 0 (/ethdev/stats) and sluice did not",
              hidden, "no sample with DPDK's wan ipackets 0 and sluice's wan rx_packets > 0")
        dec = sampler.decreases()
        check("sluice's port counters never went down (telemetry, every 50 ms)", not dec,
              "; ".join(f"{p} {f} {a} -> {b} at {t} s" for p, f, a, b, t in dec[:5]))
        check("wan after the kill >= the last count net_memif showed before it hid them",
              r1 >= shown > 0, f"sluice {r1}, net_memif {shown}")
        check("wan rx_packets == the count net_memif shows again once reconnected (no double count)",
              wan["rx_packets"] == final_shown, f"sluice {wan['rx_packets']}, net_memif {final_shown}")
        check(f"wan rx_packets == R1 + what the second txonly sent ({r1} + {sent2['tx']})",
              wan["rx_packets"] == r1 + sent2["tx"], f"sluice {wan['rx_packets']}, expected {r1 + sent2['tx']}")
        check(f"wan rx_bytes == {FRAME} bytes a packet", wan["rx_bytes"] == FRAME * wan["rx_packets"],
              f"sluice {wan['rx_bytes']}, expected {FRAME * wan['rx_packets']}")
        check(f"lan tx_packets == what rxonly received ({got['rx']})", lan["tx_packets"] == got["rx"],
              f"sluice {lan['tx_packets']}, testpmd {got['rx']}")
        check(f"lan tx_bytes == {FRAME} bytes a packet", lan["tx_bytes"] == FRAME * got["rx"],
              f"sluice {lan['tx_bytes']}, expected {FRAME * got['rx']}")
        check("every packet sluice received is sent on lan or counted under tx_full",
              wan["rx_packets"] == lan["tx_packets"] + st["drops"]["tx_full"],
              json.dumps({k: v for k, v in st["drops"].items() if v}))
        check("sluice's pool is full at exit", st["mempool"]["available"] == st["mempool"]["total"])
    except T.Failure as e:
        check("run", False, str(e))
    finally:
        if sampler:
            sampler.stop()
        notes = s.teardown()
        left = s.leftovers()
        check("nothing left behind", not left, "; ".join(left + notes))
    report()


if __name__ == "__main__":
    main()
