#!/usr/bin/python3
"""A memif peer killed under load, again and again, does not take sluice down.

testpmd txonly -> memif -> sluice wan -> lan (net_null). Each round a new txonly peer connects,
sends for a moment and is SIGKILLed. DPDK 22.11's net_memif handles the disconnect on EAL's
interrupt thread and unmaps the peer's shared memory at once, under a worker that may still be
inside its burst; with a busy loop on the worker's CPU (so the worker is preempted, mid-burst,
as a loaded host does) that faulted within 3-20 kills here before sluice's munmap learned to
wait for the workers (lib/port/ports.cpp). Asserts: sluice is alive after every kill, exits 0,
forwarded every packet it received and has every mbuf back in its pool. The crash is a race, so
this catches it often, not always (3 of 4 runs without the fix); tests/unit/port's
port_unmap_wait checks the wait itself deterministically.

Prints PASS/FAIL lines and "N passed, N failed" last; exit 77 (SKIPPED) without hugepages.
"""
import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tools" / "traffic"))
sys.path.insert(0, str(HERE.parent / "integration"))
import traffic as T  # noqa: E402
from runner import check, report  # noqa: E402

KILLS = 30


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--kills", type=int, default=KILLS)
    args = ap.parse_args()
    # meson's timeout sends SIGTERM: tear down (below) instead of dying with the children left.
    T.signal.signal(T.signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        T.require_hugepages(2 * 128 + 64)  # sluice and one testpmd at a time
    except T.Skip as e:
        print(f"SKIPPED: memif peer kill: {e}")
        sys.exit(77)
    bins = T.Binaries(args.build)
    s = T.Session("memifkill", Path(args.build) / "tests" / "traffic" / "memif-peer-kill")
    place = T.placement()
    try:
        sock = s.tmp / "wan.sock"
        flows = s.tmp / "flows.yaml"
        T.forward_all(flows, "lan")
        cfg = T.sluice_config(s.tmp / "sluice.yaml",
                              [("wan", T.memif(0, "server", sock, 12)), ("lan", "net_null0,no-rx=1")], flows)
        stats_path = s.tmp / "stats.json"
        prefix = s.prefix("sluice")
        eal = T.eal(prefix, place["dut_main"], place["dut_worker"], 128)
        sluice = s.start("sluice", [bins.sluice, *eal, "--", "-c", cfg, "--stats-out", stats_path], prefix)
        s.wait_until(lambda: sock.exists(), 30, [sluice], "waiting for sluice's socket")
        s.wait_until(lambda: "[info] running" in sluice.output(), 40, [sluice], "waiting for sluice to run")
        # The worker's CPU is shared with a busy loop, so the kernel preempts the worker, often
        # inside a burst, as on a loaded host.
        # Bounded (timeout), so that even a run killed before its teardown leaves no busy loop.
        s.start("hog", ["timeout", "300", "taskset", "-c", str(place["dut_worker"]), "sh", "-c",
                        "while :; do :; done"])

        survived = 0
        for i in range(args.kills):
            tx = T.Testpmd(s, f"testpmd-tx{i}", bins, s.prefix(f"tx{i}"), place["gen_worker"], place["gen_worker"],
                           128, [T.memif(0, "client", sock, 12)], "txonly")
            tx.ready()
            tx.start()
            time.sleep(0.4)
            tx.proc.signal(T.signal.SIGKILL)  # a crash: no goodbye, the socket closes at once
            tx.proc.wait(10)
            time.sleep(0.1)  # sluice's interrupt thread handles the disconnect
            if not sluice.alive():
                break
            survived += 1
        check(f"sluice alive after each of {args.kills} SIGKILLs of its memif peer under load",
              survived == args.kills, f"died after {survived + 1} kills: {sluice.exit_text()}\n{sluice.tail(25)}")
        if not sluice.alive():
            raise T.Failure("sluice is gone: nothing more to check")
        sluice.signal(T.signal.SIGTERM)
        sluice.wait(30)
        check("sluice exits 0", sluice.returncode == 0, f"{sluice.exit_text()}\n{sluice.tail()}")
        st = T.load_json(stats_path, "sluice --stats-out")
        wan, lan = st["ports"]["wan"], st["ports"]["lan"]
        print(f"{survived} kills; sluice wan rx {wan['rx_packets']}, lan tx {lan['tx_packets']}, "
              f"tx_full {st['drops']['tx_full']}")
        check("traffic flowed (wan received > 100,000 packets)", wan["rx_packets"] > 100_000, str(wan))
        check("every packet received went out of lan or is counted under tx_full",
              wan["rx_packets"] == lan["tx_packets"] + st["drops"]["tx_full"], f"wan {wan}, lan {lan}")
        check("sluice's pool is full at exit", st["mempool"]["available"] == st["mempool"]["total"],
              str(st["mempool"]))
    except T.Failure as e:
        check("run", False, str(e))
    finally:
        notes = s.teardown()
        left = s.leftovers()
        check("nothing left behind", not left, "; ".join(left + notes))
    report()


if __name__ == "__main__":
    main()
