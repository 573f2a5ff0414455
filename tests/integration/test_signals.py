#!/usr/bin/env python3
"""SIGTERM and SIGINT while traffic flows: exit 0, stats written, every mbuf returned."""
import json
import os
import signal
import time

from runner import (FORWARD_ALL, appliance, check, eal_args, parse_args, pcap_frames, pool_lines_ok, remove_runtime_dir,
                    report, start, tempdir, write)


def one(sluice, pcap, sig, tag):
    with tempdir() as d:
        write(d, "flows.yaml", FORWARD_ALL)
        cfg = write(d, "sluice.yaml", appliance([("in", f"net_pcap0,rx_pcap={pcap},infinite_rx=1"), ("out", "net_null0,no-rx=1")]))
        stats = os.path.join(d, "stats.json")
        eal = eal_args(tag)
        p = start(sluice, eal, ["-c", cfg, "--stats-out", stats])
        time.sleep(3)
        alive = p.poll() is None
        p.send_signal(sig)
        try:
            out, err = p.communicate(timeout=20)
        except Exception:
            p.kill()
            out, err = p.communicate()
        remove_runtime_dir(eal)
        name = signal.Signals(sig).name
        check(f"{name}: still running after 3 s of traffic", alive, err)
        check(f"{name}: exit 0", p.returncode == 0, f"rc={p.returncode}\n{err}")
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


def main():
    args = parse_args()
    pcap = os.path.join(args.data, "mixed.pcap")
    one(args.sluice, pcap, signal.SIGTERM, "sig1")
    one(args.sluice, pcap, signal.SIGINT, "sig2")
    report()


if __name__ == "__main__":
    main()
