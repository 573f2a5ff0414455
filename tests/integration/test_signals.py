#!/usr/bin/env python3
"""SIGTERM and SIGINT while traffic flows: exit 0, stats written, every mbuf returned. A fatal
signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) prints one line naming it and the lcore, and a
backtrace, then sluice still dies of that signal (exit status and core dump as without the
handler)."""
import json
import os
import re
import signal
import time

from runner import (FORWARD_ALL, appliance, check, eal_args, parse_args, pcap_frames, pool_lines_ok, remove_runtime_dir,
                    report, start, tempdir, write)


def signalled(sluice, pcap, sig, tag, d, stats=None):
    """sluice forwarding pcap for 3 s, then sig: (its returncode, stderr); checks it was alive."""
    write(d, "flows.yaml", FORWARD_ALL)
    cfg = write(d, "sluice.yaml", appliance([("in", f"net_pcap0,rx_pcap={pcap},infinite_rx=1"), ("out", "net_null0,no-rx=1")]))
    eal = eal_args(tag)
    p = start(sluice, eal, ["-c", cfg] + (["--stats-out", stats] if stats else []))
    time.sleep(3)
    alive = p.poll() is None
    p.send_signal(sig)
    try:
        _, err = p.communicate(timeout=20)
    except Exception:
        p.kill()
        _, err = p.communicate()
    remove_runtime_dir(eal)
    check(f"{signal.Signals(sig).name}: still running after 3 s of traffic", alive, err)
    return p.returncode, err


def one(sluice, pcap, sig, tag):
    with tempdir() as d:
        stats = os.path.join(d, "stats.json")
        rc, err = signalled(sluice, pcap, sig, tag, d, stats)
        name = signal.Signals(sig).name
        check(f"{name}: exit 0", rc == 0, f"rc={rc}\n{err}")
        ok, why = pool_lines_ok(err, held_at_start=pcap_frames(pcap))  # infinite_rx holds the file
        check(f"{name}: pool full before start and after stop (log)", ok, why + "\n" + err)
        try:
            s = json.load(open(stats))
        except Exception as e:  # noqa: BLE001
            check(f"{name}: stats written", False, str(e))
            return
        check(f"{name}: stats written", True)
        rx = s["ports"]["in"]["rx_packets"]
        tx = s["ports"]["out"]["tx_packets"]
        check(f"{name}: traffic flowed ({rx} packets)", rx > 1000, json.dumps(s["ports"]))
        dropped = sum(s["drops"].values())
        check(f"{name}: every packet received is forwarded or counted as a drop",
              rx == tx + dropped, f"rx {rx} tx {tx} drops {dropped}")
        check(f"{name}: mempool.available == mempool.total",
              s["mempool"]["available"] == s["mempool"]["total"] > 0, json.dumps(s["mempool"]))


def fatal(sluice, pcap, sig, tag):
    with tempdir() as d:
        rc, err = signalled(sluice, pcap, sig, tag, d)
        name = signal.Signals(sig).name
        check(f"{name}: sluice dies of {name} (returncode {rc})", rc == -sig, err[-2000:])
        line = re.search(rf"sluice: fatal signal {name[3:]} \({int(sig)}\) on lcore (\d+|none \(a non-EAL thread\)), "
                         rf"sent by pid {os.getpid()}; backtrace:\n", err)
        check(f"{name}: one line names the signal, the lcore and the sender", line is not None, err[-2000:])
        frames = err[line.end():].splitlines() if line else []
        check(f"{name}: a backtrace through sluice follows ({len(frames)} frames)",
              any("/sluice(" in f for f in frames), err[-2000:])


def main():
    args = parse_args()
    pcap = os.path.join(args.data, "mixed.pcap")
    one(args.sluice, pcap, signal.SIGTERM, "sig1")
    one(args.sluice, pcap, signal.SIGINT, "sig2")
    fatal(args.sluice, pcap, signal.SIGSEGV, "sig3")
    fatal(args.sluice, pcap, signal.SIGABRT, "sig4")
    report()


if __name__ == "__main__":
    main()
