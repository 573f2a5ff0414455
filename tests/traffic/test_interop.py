#!/usr/bin/python3
"""Interop with the real dpdk-testpmd: testpmd in txonly and in flowgen mode sends through
sluice over memif to a testpmd in rxonly, and the counts agree exactly:

    testpmd-tx TX-packets (= TX-total - TX-dropped, testpmd's own drops)  == sluice wan rx_packets
    sluice lan tx_packets                                                == testpmd-rx RX-packets

and every packet sluice received is either on lan or counted under tx_full (testpmd floods;
its rxonly peer is slower), with no validation drops: testpmd's frames pass sluice's checks.
Counters are read with the links up: testpmd-tx stops sending (its statistics), the path
drains, testpmd-rx stops (its statistics), sluice stops (its --stats-out), then both quit.
(sluice-gen against testpmd io is the scenario tests/traffic/testpmd-io.yaml.)

Prints PASS/FAIL lines and "N passed, N failed" last; exit 77 (SKIPPED) without hugepages.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "traffic"))
import traffic as T  # noqa: E402

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'}: {name}" + ("" if ok or not detail else f"\n      {detail}"), flush=True)


def one(bins, mode, logdir, seconds=2.0):
    s = T.Session(f"interop{mode}", logdir)
    place = T.placement()
    try:
        sock = {p: s.tmp / f"{p}.sock" for p in ("wan", "lan")}
        flows = s.tmp / "flows.yaml"
        T.forward_all(flows, "lan")
        cfg = T.sluice_config(s.tmp / "sluice.yaml",
                              [(p, T.memif(i, "server", sock[p], 12)) for i, p in enumerate(("wan", "lan"))], flows)
        stats_path = s.tmp / "stats.json"
        prefix = s.prefix("sluice")
        sluice = s.start("sluice", [bins.sluice, *T.eal(prefix, place["dut_main"], place["dut_worker"], 128),
                                    "--", "-c", cfg, "--stats-out", stats_path], prefix)
        s.wait_until(lambda: all(p.exists() for p in sock.values()), 30, [sluice], "waiting for sluice's sockets")
        # Three busy loops on two CPUs here: both testpmds forward on the generator's CPU.
        rx = T.Testpmd(s, "testpmd-rx", bins, s.prefix("rx"), place["gen_main"], place["gen_worker"], 128,
                       [T.memif(0, "client", sock["lan"], 12)], "rxonly")
        extra = ["--flowgen-flows=64"] if mode == "flowgen" else []
        tx = T.Testpmd(s, "testpmd-tx", bins, s.prefix("tx"), place["gen_main"], place["gen_worker"], 128,
                       [T.memif(0, "client", sock["wan"], 12)], mode, extra)
        rx.ready()
        tx.ready()
        s.wait_until(lambda: "[info] running" in sluice.output(), 40, [sluice, rx.proc, tx.proc],
                     "waiting for sluice to forward")
        rx.start()
        tx.start()
        time.sleep(seconds)
        tx_stats = tx.stop()[0]
        time.sleep(1.0)  # drain: sluice forwards what is in its rings, testpmd-rx takes it
        rx_stats = rx.stop()[0]
        sluice.signal(T.signal.SIGINT)
        sluice.wait(30)
        check(f"{mode}: sluice exits 0", sluice.returncode == 0, f"{sluice.exit_text()}\n{sluice.tail()}")
        st = T.load_json(stats_path, "sluice --stats-out")
        tx.quit()
        rx.quit()
        wan, lan = st["ports"]["wan"], st["ports"]["lan"]
        sent = tx_stats["tx_total"] - tx_stats["tx_dropped"]
        print(f"{mode}: testpmd-tx {tx_stats}, sluice wan rx {wan['rx_packets']} lan tx {lan['tx_packets']}, "
              f"testpmd-rx {rx_stats}")
        check(f"{mode}: traffic flowed ({sent} packets)", sent > 10000, json.dumps(tx_stats))
        check(f"{mode}: testpmd TX-packets == TX-total - TX-dropped", tx_stats["tx"] == sent, json.dumps(tx_stats))
        check(f"{mode}: testpmd tx - testpmd-side drops == sluice wan rx_packets ({sent})",
              sent == wan["rx_packets"], f"testpmd {sent}, sluice {wan['rx_packets']}")
        check(f"{mode}: sluice lan tx_packets == testpmd-rx RX-packets ({rx_stats['rx']})",
              lan["tx_packets"] == rx_stats["rx"], f"sluice {lan['tx_packets']}, testpmd {rx_stats['rx']}")
        # testpmd-tx floods (~10 Mpps) and testpmd-rx shares its CPU, so lan's ring overflows:
        # sluice counts those under tx_full. Nothing else may be dropped: testpmd's frames are
        # valid and the flows forward everything.
        drops = {k: v for k, v in st["drops"].items() if v}
        check(f"{mode}: every packet sluice received is sent on lan or counted under tx_full",
              wan["rx_packets"] == lan["tx_packets"] + st["drops"]["tx_full"], json.dumps(drops))
        check(f"{mode}: no validation or policy drops (testpmd's frames are valid)",
              set(drops) <= {"tx_full"}, json.dumps(drops))
        check(f"{mode}: every packet matched the default (forward to lan)",
              st["default"]["packets"] == wan["rx_packets"], json.dumps(st["default"]))
        check(f"{mode}: sluice's pool is full at exit", st["mempool"]["available"] == st["mempool"]["total"])
    except T.Failure as e:
        check(f"{mode}: run", False, str(e))
    finally:
        notes = s.teardown()
        left = s.leftovers()
        check(f"{mode}: nothing left behind", not left, "; ".join(left + notes))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    args = ap.parse_args()
    try:
        T.require_hugepages(3 * 128 + 64)
    except T.Skip as e:
        print(f"SKIPPED: testpmd interop: {e}")
        sys.exit(77)
    bins = T.Binaries(args.build)
    with tempfile.TemporaryDirectory(prefix="sluice-interop-") as logs:
        for mode in ("txonly", "flowgen"):
            one(bins, mode, Path(logs) / mode)
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if results and all(results) else 1)


if __name__ == "__main__":
    main()
