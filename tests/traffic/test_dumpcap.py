#!/usr/bin/python3
"""The real dpdk-dumpcap against a running sluice (issue 10, acceptance 3; CONTRACT
"Operations": rte_pdump is initialised).

A known pcap (mixed.pcap's frames, in a loop, cut at 1000) goes through testpmd in io mode
(net_pcap rx_pcap -> memif) into sluice's port 'in', which forwards to a net_null sink.
`dpdk-dumpcap --file-prefix P -i net_memif0 -c 1000` attached to sluice as a secondary process
before the traffic starts; tshark reads its file (and writes it again as classic pcap for the
byte comparison), and its frames are, in order and byte for byte, the frames of the pcap: the
packets dumpcap wrote are the ones sluice received. dumpcap attaches a second time (the pdump
callbacks came off and go on again); sluice exits 0 with every mbuf back and its port counted
the 1000. Without hugepages sluice starts anyway and says why nothing can attach.

Then dumpcap (on the worker's CPU, so it preempts the worker) attaches and detaches 12 times
while a second sluice forwards net_null's endless traffic: DPDK 22.11's rte_pdump lets a secondary that detaches free its pool while a worker may
still be copying into it (fixed upstream in DPDK 25.11, "pdump: fix races in callbacks"), and
sluice waits the workers out in the callback removal itself (lib/port); without that, sluice
crashed in about one run of this test in two here.
sluice runs without --huge-unlink here (tools/traffic's EAL arguments have it): a secondary
maps the primary's hugepage files, and --huge-unlink leaves none.
The Session removes the hugepage files and runtime folders afterwards.

Prints PASS/FAIL lines and "N passed, N failed" last; exit 77 (SKIPPED) without hugepages.
"""
import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tools" / "traffic"))
sys.path.insert(0, str(HERE.parent / "integration"))
import traffic as T  # noqa: E402
from runner import check, report  # noqa: E402
from packets import read_pcap, write_pcap  # noqa: E402

COUNT = 1000
DETACHES = 12


def sluice_eal(prefix, place, mem):
    return ["--lcores", f"0@{place['dut_main']},1@{place['dut_worker']}", *mem, "--no-pci",
            f"--file-prefix={prefix}", "--log-level=lib.eal:error", "--log-level=pmd.net.memif:error"]


def dumpcap(s, prefix, out, stop, dev="net_memif0", cpu=None):
    """Starts dpdk-dumpcap on sluice's port 'in' (stop: its -c/-a options) and waits until it
    says "Packets captured:", which it does once its callbacks are on sluice's queues
    ("Capturing on" comes before). stdbuf: no stdio buffering between it and its log."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    p = s.start("dumpcap", [*pin, "stdbuf", "-o0", shutil.which("dpdk-dumpcap") or "/usr/bin/dpdk-dumpcap",
                            f"--file-prefix={prefix}", "-i", dev, "-p", *stop, "-w", out])
    s.wait_until(lambda: "Packets captured:" in p.output() or not p.alive(), 30, [],
                 "waiting for dpdk-dumpcap to attach")
    return p


def tshark_frames(path, tmp):
    """What tshark reads in path: (frames as bytes, interface names, error text)."""
    conv = tmp / (Path(path).stem + ".pcap")
    r = subprocess.run(["tshark", "-r", str(path), "-F", "pcap", "-w", str(conv)], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        return [], set(), f"tshark -r exited {r.returncode}: {r.stderr.strip()}"
    names = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.interface_name"],
                           capture_output=True, text=True, timeout=60)
    return read_pcap(conv), set(names.stdout.split()), ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    args = ap.parse_args()
    try:
        T.require_hugepages(2 * 128 + 64)
    except T.Skip as e:
        print(f"SKIPPED: dpdk-dumpcap: {e}")
        sys.exit(77)
    for tool in ("dpdk-dumpcap", "tshark"):
        if not shutil.which(tool):
            print(f"FAIL: {tool} is not installed (tools/install-deps installs dpdk and tshark)")
            sys.exit(1)
    bins = T.Binaries(args.build)
    s = T.Session("dumpcap", Path(args.build) / "tests" / "traffic" / "dumpcap")
    place = T.placement()
    try:
        known = read_pcap(HERE.parent / "integration" / "data" / "mixed.pcap")
        frames = (known * (COUNT // len(known) + 1))[:COUNT]
        pcap = s.tmp / "in.pcap"
        write_pcap(pcap, frames)
        sock = s.tmp / "in.sock"
        flows = s.tmp / "flows.yaml"
        T.forward_all(flows, "out")
        cfg = T.sluice_config(s.tmp / "sluice.yaml", [("in", T.memif(0, "server", sock, 12)), ("out", "net_null0")],
                              flows)
        stats_path = s.tmp / "stats.json"
        prefix = s.prefix("sluice")
        sluice = s.start("sluice", [bins.sluice, *sluice_eal(prefix, place, ["--socket-mem", "128"]), "--",
                                    "-c", cfg, "--stats-out", stats_path], prefix)
        s.wait_until(sock.exists, 30, [sluice], "waiting for sluice's memif socket")
        # testpmd io: port 0 (net_pcap, the file once) -> port 1 (memif into sluice).
        # --no-flush-rx: 'start' would first drain the RX queues, which reads the whole file.
        tp = T.Testpmd(s, "testpmd", bins, s.prefix("tp"), place["gen_worker"], place["gen_worker"], 128,
                       [f"net_pcap0,rx_pcap={pcap}", T.memif(0, "client", sock, 12)], "io", ["--no-flush-rx"])
        tp.ready()
        s.wait_until(lambda: "[info] running" in sluice.output(), 40, [sluice, tp.proc],
                     "waiting for sluice to forward")
        check("sluice's memif port is connected", "port 'in': link up" in sluice.output(), sluice.tail())
        check("sluice says dpdk-dumpcap may attach",
              f"pdump: ready: dpdk-dumpcap --file-prefix={prefix}" in sluice.output(), sluice.tail())

        out = s.tmp / "out.pcapng"
        dc = dumpcap(s, prefix, out, ["-c", str(COUNT)])
        tp.start()
        if not dc.wait(30):
            dc.stop()
        check(f"dumpcap attaches, captures {COUNT} packets and exits 0",
              dc.returncode == 0 and out.exists() and "Packet dump enable failed" not in dc.output(),
              f"{dc.exit_text()}\n{dc.tail()}")
        tp_stats = tp.stop()
        got, names, err = tshark_frames(out, s.tmp) if out.exists() else ([], set(), "no file")
        check(f"tshark reads dumpcap's file: {COUNT} frames", not err and len(got) == COUNT,
              err or f"{len(got)} frames; testpmd {tp_stats}")
        # dumpcap (22.11) names an interface dpdk:<port id>.
        pid = re.search(r"port (\d+) 'in': net_memif0", sluice.output())
        check("the file's one interface is sluice's port 'in' (net_memif0)",
              pid and names == {f"dpdk:{pid.group(1)}"}, f"interfaces {sorted(names)}")
        first_bad = next((i for i, (a, b) in enumerate(zip(got, frames)) if a != b), None)
        check("its frames are the pcap's frames sluice received, in order, byte for byte",
              got and len(got) == len(frames) and first_bad is None,
              f"frame {first_bad}: {got[first_bad][:24].hex()} != {frames[first_bad][:24].hex()}"
              if first_bad is not None else f"{len(got)} of {len(frames)} frames")

        out2 = s.tmp / "again.pcapng"
        dc2 = dumpcap(s, prefix, out2, ["-a", "duration:1"])
        if not dc2.wait(30):
            dc2.stop()
        check("dumpcap attaches again after the first one left, and exits 0",
              dc2.returncode == 0 and out2.exists() and "Packet dump enable failed" not in dc2.output(),
              f"{dc2.exit_text()}\n{dc2.tail()}")

        sluice.signal(T.signal.SIGTERM)
        sluice.wait(30)
        check("sluice exits 0 after the captures", sluice.returncode == 0, f"{sluice.exit_text()}\n{sluice.tail()}")
        tp.quit()
        st = T.load_json(stats_path, "sluice --stats-out")
        check(f"sluice's port 'in' received the {COUNT} packets", st["ports"]["in"]["rx_packets"] == COUNT,
              json.dumps(st["ports"]["in"]))
        check("sluice's pool is full at exit", st["mempool"]["available"] == st["mempool"]["total"],
              json.dumps(st["mempool"]))

        # Under load: net_null generates packets as fast as the worker takes them, and dumpcap
        # attaches and detaches again and again. Each detach removes rte_pdump's callbacks while
        # the worker polls; sluice waits out the worker before rte_pdump lets the tool free what
        # the callback copies into (lib/port: set_callback_readers), so sluice keeps running.
        prefix = s.prefix("load")
        load_stats = s.tmp / "load.json"
        ld = s.start("sluice-load", [bins.sluice, *sluice_eal(prefix, place, ["--socket-mem", "128"]), "--",
                                     "-c", T.sluice_config(s.tmp / "load.yaml", [("in", "net_null0"),
                                                                                 ("out", "net_null1,no-rx=1")], flows),
                                     "--stats-out", load_stats], prefix)
        s.wait_until(lambda: "[info] running" in ld.output(), 40, [ld], "waiting for sluice to forward")
        detached = 0
        for i in range(DETACHES):
            o = s.tmp / f"load{i}.pcapng"
            d = dumpcap(s, prefix, o, ["-c", "20000"], dev="net_null0", cpu=place["dut_worker"])
            if not d.wait(30):
                d.stop()
            if d.returncode == 0 and ld.alive():
                detached += 1
            else:
                print(f"detach {i}: dumpcap {d.exit_text()}, sluice {'running' if ld.alive() else ld.exit_text()}\n"
                      f"{d.tail()}")
            if not ld.alive():
                break
        check(f"under load, dumpcap attached and detached {DETACHES} times and sluice kept running "
              f"({detached} clean)", detached == DETACHES and ld.alive(), f"{ld.exit_text()}\n{ld.tail()}")
        ld.signal(T.signal.SIGTERM)
        ld.wait(30)
        check("sluice exits 0 after captures under load", ld.returncode == 0, f"{ld.exit_text()}\n{ld.tail()}")
        if ld.returncode == 0:
            lst = T.load_json(load_stats, "sluice --stats-out")
            check("under load: sluice's pool is full at exit", lst["mempool"]["available"] == lst["mempool"]["total"],
                  json.dumps(lst["mempool"]))

        # No hugepages: no secondary can attach; sluice says so and runs.
        prefix = s.prefix("nohuge")
        nh = s.start("sluice-nohuge", [bins.sluice, *sluice_eal(prefix, place, ["--no-huge", "-m", "256"]), "--",
                                       "-c", T.sluice_config(s.tmp / "null.yaml", [("in", "net_null0"),
                                                                                   ("out", "net_null1")], flows),
                                       "--duration", "1"], prefix)
        nh.wait(40)
        check("--no-huge: sluice runs, exits 0 and says why dpdk-dumpcap cannot attach",
              nh.returncode == 0 and re.search(r"pdump: not initialised: EAL runs without hugepages", nh.output()),
              f"{nh.exit_text()}\n{nh.tail()}")
    except T.Failure as e:
        check("run", False, str(e))
    finally:
        notes = s.teardown()
        left = s.leftovers()
        check("nothing left behind", not left, "; ".join(left + notes))
    report()


if __name__ == "__main__":
    main()
