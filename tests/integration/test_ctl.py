#!/usr/bin/env python3
"""sluice-ctl against a running sluice and against none (issue 10, acceptance 7).

running: mixed.pcap once through rules named a-b, a_b and a.b (DPDK's dict keys used to map
  the first two to one key); capture on a.b. Every subcommand in table and --json form; the
  numbers agree with each other and, traffic done, with --stats-out at exit: each rule once,
  under its own name, with its own counts. rules NAME, an unknown rule, a wrong prefix, a good
  and a bad reload.
paging: 2,000 rules (more than one telemetry answer holds): rules lists every one in order.
coalesce: 8 /sluice/reload requests sent together within the rate limit's pause: 4 (the bound)
  wait and share one reload, the other 4 are answered "busy" at once.
storm: 20 sluice-ctl reload at the same moment: every one answered (ok, or busy with exit 75),
  at most a few reloads, and /sluice/stats answers promptly meanwhile, on an open connection and
  on a new one.
stall: a worker made to hang (SLUICE_TEST_STALL): health says stalled (exit 1), workers too.
none: no sluice (exit 1 and the message), a socket left by a dead process, a DPDK process that
  is not sluice, a sluice that lacks a command, all telemetry connections taken (exit 75).
"""
import argparse
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback

from runner import Background, check, pcap_frames, report, tempdir, write
from telemetry import Telemetry, runtime_dir

# main lcore 0 on CPU 0, worker lcore 1 on CPU 1, capture lcore 2 sharing CPU 0 (two CPUs).
LCORES = "0@0,1@1,2@0"
MAX_WAITERS = 4  # app/reload_control.h kMaxReloadWaiters
EX_TEMPFAIL = 75
RULES = ["a-b", "a_b", "a.b"]
FLOWS = """version: 1
non_ip: { action: drop }
default: { action: drop }
rules:
  - name: a-b
    priority: 10
    match: { proto: udp }
    action: forward
    to: a
  - name: a_b
    priority: 10
    match: { proto: tcp }
    action: forward
    to: b
  - name: a.b
    match: { proto: icmp }
    action: drop
    capture: true
"""
BAD_FLOWS = "version: 1\nrules:\n  - name: x\n    action: forward\n    to: nowhere\n"
SYNC = ("import argparse, errno, json, os, runpy, socket, sys, time\n"
        "start, ctl = float(sys.argv[1]), sys.argv[2]\n"
        "sys.argv = [ctl] + sys.argv[3:]\n"
        "time.sleep(max(0.0, start - time.time()))\n"
        "runpy.run_path(ctl, run_name='__main__')\n")


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--sluice-ctl", required=True)
    a = ap.parse_args()
    return os.path.abspath(a.sluice), os.path.abspath(a.data), os.path.abspath(a.sluice_ctl)


def eal(prefix, lcores=LCORES):
    return [f"--lcores={lcores}", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
            f"--file-prefix={prefix}", "--log-level=lib.eal:error"]


class Ctl:
    def __init__(self, path, prefix):
        self.path, self.prefix = path, prefix

    def __call__(self, *args, prefix=None, timeout=60):
        """Runs sluice-ctl; returns (exit status, stdout, stderr)."""
        p = subprocess.run([self.path, "--file-prefix", prefix or self.prefix, *args], capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr

    def json(self, *args):
        rc, out, err = self("--json", *args)
        try:
            return rc, json.loads(out), err
        except ValueError:
            return rc, None, err + out


def started(s, tag):
    return check(f"{tag}: sluice starts", s.wait_for(r"\] running", 1), "".join(s.lines[-20:]))


def until(get, done, timeout):
    """get() every 0.2 s until done(its value) or the time is up; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = get()
        if done(v) or time.monotonic() > deadline:
            return v
        time.sleep(0.2)


def rows(text):
    """A table's lines split into cells."""
    return [l.split() for l in text.strip().splitlines()]


def running(sluice, data, ctl_path):
    tag = "running"
    prefix = f"ctl-{os.getpid()}"
    ctl = Ctl(ctl_path, prefix)
    pcap = os.path.join(data, "mixed.pcap")
    frames = pcap_frames(pcap)
    with tempdir() as d:
        store = os.path.join(d, "store")
        os.mkdir(store)
        write(d, "flows.yaml", FLOWS)
        cfg = write(d, "sluice.yaml", "ports:\n"
                    f"  - name: in\n    device: \"net_pcap0,rx_pcap={pcap}\"\n"
                    "  - name: a\n    device: \"net_null0,no-rx=1\"\n"
                    "  - name: b\n    device: \"net_null1,no-rx=1\"\n"
                    "workers:\n  lcores: [1]\n  burst: 32\nflows: flows.yaml\n"
                    f"capture:\n  lcore: 2\n  path: {store}\n  chunk_bytes: 64KiB\n  snaplen: 9000\n  flush_ms: 50\n")
        stats_out = os.path.join(d, "stats.json")
        s = Background(sluice, eal(prefix), ["-c", cfg, "--stats-out", stats_out])
        try:
            if not started(s, tag):
                return
            # The file goes through once; then wait for the snapshot (published every 0.5 s) to
            # show all of it and for capture's flush.
            until(lambda: ctl.json("ports"), lambda r: r[1] and r[1]["in"]["rx_packets"] >= frames, 30)
            time.sleep(1.2)
            # Read the ports again now that the file is through: the snapshot that first showed
            # every frame received can be one taken while the worker's last burst was between
            # rte_eth_rx_burst and rte_eth_tx_burst, its TX counts not yet in.
            _, ports, _ = ctl.json("ports")
            check(f"{tag}: ports --json: in received the whole file ({frames} frames)",
                  ports and ports["in"]["rx_packets"] == frames, json.dumps(ports))

            # stats
            rc, st, err = ctl.json("stats")
            keys = {"uptime_s", "ports", "drops", "rules", "default", "non_ip", "capture", "reload", "mempool",
                    "latency_ns"}
            check(f"{tag}: stats --json: exit 0, the statistics JSON's keys", rc == 0 and st and keys <= set(st),
                  f"rc={rc} {err} {st and sorted(st)}")
            if not st:
                return
            check(f"{tag}: stats --json: every rule once under its own name, in file order",
                  list(st["rules"]) == RULES, json.dumps(st["rules"]))
            got = {r: st["rules"].get(r, {"packets": 0, "bytes": 0}) for r in RULES}
            check(f"{tag}: stats --json: a-b and a_b have their own counts (udp and tcp), all non-zero",
                  got["a-b"]["packets"] != got["a_b"]["packets"]
                  and all(got[r]["packets"] > 0 and got[r]["bytes"] > 0 for r in RULES), json.dumps(st["rules"]))
            if list(st["rules"]) != RULES:
                return
            check(f"{tag}: stats --json: drops has every reason (18)", len(st["drops"]) == 18 and "runt" in st["drops"],
                  json.dumps(st["drops"]))
            check(f"{tag}: stats --json: ports, reload, mempool filled",
                  st["ports"] == ports and st["reload"]["generation"] == 1 and st["mempool"]["total"] > 0, json.dumps(st))
            rc, out, err = ctl("stats")
            t = out.splitlines()
            check(f"{tag}: stats table: exit 0, a line per port, per rule, default and non_ip",
                  rc == 0 and all(any(l.split()[:1] == [p] for l in t) for p in ("in", "a", "b"))
                  and all(any(l.split()[:2] == ["rule", r] for l in t) for r in RULES)
                  and any(l.startswith("default ") for l in t) and any(l.startswith("non_ip ") for l in t)
                  and t[0].startswith("sluice pid "), out + err)
            in_row = next((l.split() for l in t if l.split()[:1] == ["in"]), [])
            check(f"{tag}: stats table: the in row shows rx_packets {frames}", in_row[1:2] == [str(frames)], in_row)

            # ports
            rc, out, err = ctl("ports")
            r = rows(out)
            check(f"{tag}: ports table: header and one aligned row per port",
                  rc == 0 and r[0][:3] == ["port", "rx_packets", "rx_bytes"] and [x[0] for x in r[1:]] == ["in", "a", "b"]
                  and r[1][1] == str(frames) and len({len(l) for l in out.splitlines()}) == 1, out + err)

            # rules
            rc, rl, err = ctl.json("rules")
            check(f"{tag}: rules --json: {RULES}, the counts of stats", rc == 0 and rl == st["rules"], f"{rl} {err}")
            rc, out, err = ctl("rules")
            check(f"{tag}: rules table: a row per rule with its packets and bytes",
                  rc == 0 and rows(out)[1:] == [[n, str(v["packets"]), str(v["bytes"])] for n, v in st["rules"].items()],
                  out + err)
            for name in RULES:
                rc, one, err = ctl.json("rules", name)
                check(f"{tag}: rules {name} --json: that rule only",
                      rc == 0 and one and one["name"] == name and one["packets"] == st["rules"][name]["packets"]
                      and one["bytes"] == st["rules"][name]["bytes"], f"{one} {err}")
            rc, out, err = ctl("rules", "a_b")
            check(f"{tag}: rules a_b table: one row", rc == 0 and rows(out)[1:] == [["a_b", str(st["rules"]["a_b"]["packets"]),
                                                                               str(st["rules"]["a_b"]["bytes"])]], out + err)
            rc, out, err = ctl("rules", "a/b")
            check(f"{tag}: rules a/b (no such rule): exit 1, says so",
                  rc == 1 and "no rule named a/b" in err and out == "", f"rc={rc} {out} {err}")

            # workers
            rc, ws, err = ctl.json("workers")
            check(f"{tag}: workers --json: one worker on lcore 1 that received every packet, alive",
                  rc == 0 and ws and len(ws) == 1 and ws[0]["index"] == 0 and ws[0]["lcore"] == 1
                  and ws[0]["rx_packets"] == frames and ws[0]["loops"] > 0 and ws[0]["stalled"] is False
                  and ws[0]["idle_ms"] < 1000, f"{ws} {err}")
            rc, out, err = ctl("workers")
            r = rows(out)
            check(f"{tag}: workers table: worker 0, lcore 1, {frames} packets, not stalled",
                  rc == 0 and r[0][:6] == ["worker", "lcore", "rx_packets", "loops", "idle_ms", "stalled"]
                  and r[1][:3] == ["0", "1", str(frames)] and r[1][5] == "no", out + err)
            check(f"{tag}: workers table: then drops, handed_off, ring_full and the busy share",
                  rc == 0 and r[0][6:] == ["drops", "handed_off", "ring_full", "busy"]
                  and r[1][6] == str(ws[0]["drops"]) and r[1][7:9] == ["0", "0"] and r[1][9].endswith("%"), out + err)

            # capture
            rc, cap, err = ctl.json("capture")
            check(f"{tag}: capture --json: state ok, the packets of rule a.b (capture: true), written",
                  rc == 0 and cap and cap["state"] == "ok" and cap["packets"] == st["rules"]["a.b"]["packets"]
                  and cap["bytes_written"] > 0 and cap["dropped"] == 0, f"{cap} {err} {st['rules']}")
            rc, out, err = ctl("capture")
            check(f"{tag}: capture table: state ok, packets", rc == 0 and ["state", "ok"] in rows(out)
                  and ["packets", str(cap and cap["packets"])] in rows(out), out + err)

            # health
            rc, h, err = ctl.json("health")
            check(f"{tag}: health --json: ok (exit 0), capture ok, worker 0 on lcore 1 not stalled",
                  rc == 0 and h and h["status"] == "ok" and h["capture"] == "ok" and len(h["workers"]) == 1
                  and h["workers"][0]["lcore"] == 1 and h["workers"][0]["stalled"] is False, f"rc={rc} {h} {err}")
            rc, out, err = ctl("health")
            check(f"{tag}: health table: status ok", rc == 0 and rows(out)[0] == ["status", "ok"]
                  and ["0", "1"] == next((x[:2] for x in rows(out) if x[:1] == ["0"]), None), out + err)

            # No --file-prefix: the one DPDK process running is found (as sluice.service's is).
            env = {k: v for k, v in os.environ.items() if k != "SLUICE_FILE_PREFIX"}
            p = subprocess.run([ctl_path, "--json", "health"], capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL, env=env)
            check(f"{tag}: no --file-prefix: the only running sluice is found",
                  p.returncode == 0 and '"status": "ok"' in p.stdout, f"rc={p.returncode} {p.stdout} {p.stderr}")
            p = subprocess.run([ctl_path, "health"], capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL, env=dict(env, SLUICE_FILE_PREFIX=f"{prefix}-env"))
            check(f"{tag}: $SLUICE_FILE_PREFIX is the default prefix",
                  p.returncode == 1 and f"file prefix {prefix}-env" in p.stderr, f"rc={p.returncode} {p.stderr}")

            # --socket names the socket alone: a missing one is reported by its path, not by the
            # prefix sluice-ctl would otherwise pick (this running sluice's).
            missing = os.path.join(d, "nonexistent.sock")
            p = subprocess.run([ctl_path, "--socket", missing, "health"], capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL, env=env)
            check(f"{tag}: --socket that does not exist, another sluice running: exit 1, names the socket only",
                  p.returncode == 1 and p.stdout == "" and p.stderr == f"sluice-ctl: no sluice telemetry socket at {missing}\n",
                  f"rc={p.returncode} {p.stdout!r} {p.stderr!r}")

            # wrong prefix
            rc, out, err = ctl("stats", prefix=f"{prefix}-nope")
            check(f"{tag}: a wrong prefix: exit 1, names the prefix that runs",
                  rc == 1 and f"no sluice running with file prefix {prefix}-nope" in err and prefix in err.split("file prefix ")[-1],
                  f"rc={rc} {err}")

            # reload: good, then bad
            rc, out, err = ctl("reload")
            check(f"{tag}: reload table: exit 0, 'reload ok: rules generation 2'",
                  rc == 0 and out.startswith("reload ok: rules generation 2:"), f"rc={rc} {out} {err}")
            rc, r, err = ctl.json("reload")
            check(f"{tag}: reload --json: ok, generation 3, coalesced 1", rc == 0 and r and r["result"] == "ok"
                  and r["generation"] == 3 and r["coalesced"] == 1, f"rc={rc} {r} {err}")
            write(d, "flows.yaml", BAD_FLOWS)
            time.sleep(0.3)  # the watcher rejects it first (debounce 200 ms); explicit reloads say so again
            rc, out, err = ctl("reload")
            check(f"{tag}: reload of a bad file: exit 1, the error with file:line:col",
                  rc == 1 and re.search(r"reload failed, rules generation 3 keeps running: .*flows\.yaml:5:\d+: .*nowhere", err),
                  f"rc={rc} {out} {err}")
            rc, r, err = ctl.json("reload")
            check(f"{tag}: reload --json of a bad file: exit 1, result failed", rc == 1 and r and r["result"] == "failed",
                  f"rc={rc} {r} {err}")
            write(d, "flows.yaml", FLOWS)
            time.sleep(0.7)
            rc, rl2, err = ctl.json("rules")
        finally:
            code, log = s.stop()
        check(f"{tag}: sluice exits 0", code == 0, log[-2000:])
        try:
            final = json.load(open(stats_out))
        except (OSError, ValueError) as e:
            check(f"{tag}: --stats-out written", False, str(e))
            return
        check(f"{tag}: telemetry's rules equal --stats-out's at exit (traffic done): each rule once, own counts",
              final["rules"] == st["rules"] == rl2, f"{final['rules']} {st['rules']} {rl2}")


def big_flows(n):
    names = [f"r{'-_.'[i % 3]}{i:04d}" for i in range(n)]
    text = "version: 1\nrules:\n" + "".join(
        f"  - name: {nm}\n    match: {{ proto: udp, dst_port: {1000 + i} }}\n    action: drop\n" for i, nm in enumerate(names))
    return names, text


def recv_all(socks, deadline):
    """{index: (monotonic time, reply value)} as the answers come."""
    got = {}
    while len(got) < len(socks) and time.monotonic() < deadline:
        ready, _, _ = select.select([s.sock for i, s in enumerate(socks) if i not in got], [], [], 0.05)
        now = time.monotonic()
        for r in ready:
            i = next(i for i, s in enumerate(socks) if s.sock is r)
            got[i] = (now, json.loads(r.recv(socks[i].max_len))["/sluice/reload"])
    return got


def rate(sluice, data, ctl_path):
    prefix = f"ctl-rate-{os.getpid()}"
    ctl = Ctl(ctl_path, prefix)
    e = eal(prefix, "0,1")
    with tempdir() as d:
        names, text = big_flows(2000)
        write(d, "flows.yaml", text)
        cfg = write(d, "sluice.yaml", "ports:\n  - name: in\n    device: \"net_null0,no-rx=1\"\n"
                    "workers:\n  lcores: [1]\n  burst: 32\nflows: flows.yaml\n")
        s = Background(sluice, e, ["-c", cfg])
        socks = []
        try:
            if not started(s, "rate: 2,000 rules:"):
                return
            time.sleep(0.7)
            tag = "paging"
            rc, rl, err = ctl.json("rules")
            check(f"{tag}: rules --json lists all 2,000 rules in file order (many telemetry answers)",
                  rc == 0 and rl is not None and list(rl) == names, f"rc={rc} {err} {rl and len(rl)}")
            rc, out, err = ctl("rules")
            check(f"{tag}: rules table: 2,000 rows", rc == 0 and [x[0] for x in rows(out)[1:]] == names, err)
            rc, one, err = ctl.json("rules", names[-1])
            check(f"{tag}: rules {names[-1]} --json: index 1999", rc == 0 and one and one["index"] == 1999, f"{one} {err}")

            tag = "coalesce"
            socks = [Telemetry(e) for _ in range(2 * MAX_WAITERS)]
            first = socks[0].cmd("/sluice/reload")
            t_first = time.monotonic()
            for c in socks:  # within the pause the rate limit makes after that reload
                c.sock.send(b"/sluice/reload")
            t_sent = time.monotonic()
            got = recv_all(socks, time.monotonic() + 60)
            ok = [(t, r) for t, r in got.values() if r and r["result"] == "ok"]
            busy = [(t, r) for t, r in got.values() if r and r["result"] == "busy"]
            took_ms = first["took_us"] / 1000
            check(f"{tag}: the reply times the reload whole and each phase (took_us >= parse + build + diff + "
                  f"publish)", first["took_us"] + 4 >= first["parse_us"] + first["build_us"] + first["diff_us"] +
                  first["publish_us"] > 0, first)
            check(f"{tag}: all {len(socks)} requests answered, sent within {1000 * (t_sent - t_first):.1f} ms of a reload "
                  f"({took_ms:.0f} ms)", len(got) == len(socks), got)
            check(f"{tag}: {MAX_WAITERS} waited and share one reload (generation {first['generation'] + 1}, coalesced "
                  f"{MAX_WAITERS})", len(ok) == MAX_WAITERS and all(r["generation"] == first["generation"] + 1 and
                                                                   r["coalesced"] == MAX_WAITERS for _, r in ok), got)
            check(f"{tag}: the other {MAX_WAITERS} answered busy at once",
                  len(busy) == MAX_WAITERS and all(t - t_sent < 0.5 and r["error"] == "busy: a reload is already queued; retry"
                                                   for t, r in busy), got)
            wait_ms = 1000 * (min((t for t, _ in ok), default=0) - t_first)
            least = max(1000, took_ms) - first["grace_us"] / 1000 - 20
            check(f"{tag}: callers competed, so the shared reload waited 1 s after the last (answered {wait_ms:.0f} ms "
                  f"after it; at least {least:.0f}: 1 s less the last one's grace)", wait_ms >= least, got)
            check(f"{tag}: the busy ones are covered: the shared reload read the file after they were answered",
                  max((t for t, _ in busy), default=1e18) < min((t for t, _ in ok), default=0), got)
            for c in socks:
                c.close()
            socks = []

            tag = "storm"
            mon = Telemetry(e)
            write(d, "flows.yaml", FLOWS.replace("    capture: true\n", "").replace("to: a", "to: in").replace("to: b", "to: in"))
            # At once, within the watcher's debounce: an explicit reload (after one of the watcher's
            # on the same bytes, explicit reloads report that one again instead of reloading).
            r = mon.cmd("/sluice/reload")
            check(f"{tag}: the small file applied by telemetry", r and r["result"] == "ok" and not r["repeated"]
                  and r["trigger"] == "telemetry", r)
            time.sleep(0.5)
            stop, lat, fresh = threading.Event(), [], []

            def monitor():
                while not stop.is_set():
                    t0 = time.monotonic()
                    mon.cmd("/sluice/stats", timeout=10)
                    lat.append(time.monotonic() - t0)
                    time.sleep(0.01)

            def fresh_connection():
                time.sleep(0.15)
                t0 = time.monotonic()
                while time.monotonic() - t0 < 5:
                    try:
                        c = Telemetry(e, wait_s=0)
                        c.cmd("/sluice/stats", timeout=5)
                        c.close()
                        fresh.append(time.monotonic() - t0)
                        return
                    except (OSError, ValueError):
                        time.sleep(0.01)

            before = s.count(r"reload \(telemetry\)")
            threads = [threading.Thread(target=monitor), threading.Thread(target=fresh_connection)]
            for t in threads:
                t.start()
            start = time.time() + 1.5
            procs = [subprocess.Popen([sys.executable, "-c", SYNC, str(start), ctl_path, "--file-prefix", prefix, "--json",
                                       "reload"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(20)]
            results = []
            for p in procs:
                out, err = p.communicate(timeout=120)
                results.append((p.returncode, out, err))
            storm_s = time.time() - start
            time.sleep(0.3)
            stop.set()
            for t in threads:
                t.join()
            mon.close()
            reloads = s.count(r"reload \(telemetry\)") - before
            answers = []
            for rc, out, err in results:
                try:
                    answers.append((rc, json.loads(out)))
                except ValueError:
                    answers.append((rc, {"result": f"no JSON: {out} {err}"}))
            ok = [r for rc, r in answers if rc == 0 and r["result"] == "ok"]
            busy = [r for rc, r in answers if rc == EX_TEMPFAIL and r["result"] == "busy"]
            check(f"{tag}: 20 sluice-ctl reload at once: all answered in {storm_s:.1f} s ({len(ok)} ok, {len(busy)} busy "
                  "with exit 75)", len(ok) + len(busy) == 20 and ok, answers)
            gens = {}
            for r in ok:
                gens.setdefault(r["generation"], []).append(r["coalesced"])
            check(f"{tag}: a few reloads did it all, at most one a second after the first: {reloads} in {storm_s:.1f} s "
                  f"(generations {sorted(gens)})", 1 <= reloads <= max(4, 2 + storm_s), answers)
            check(f"{tag}: each reload answered all that joined it", all(len(v) == v[0] for v in gens.values()), gens)
            # Telemetry threads share CPU 0 with the main lcore and the 20 clients: the slowest
            # answer says how loaded the machine is, the median what sluice does.
            lat.sort()
            median = lat[len(lat) // 2] if lat else 9
            check(f"{tag}: /sluice/stats answered promptly meanwhile on an open connection ({len(lat)} answers, median "
                  f"{1000 * median:.0f} ms, the slowest {1000 * max(lat, default=0):.0f} ms)",
                  len(lat) > 10 and median < 0.1 and max(lat) < 2, lat)
            check(f"{tag}: ... and on a new connection ({1000 * fresh[0] if fresh else -1:.0f} ms)", fresh and fresh[0] < 2,
                  fresh)
        finally:
            for c in socks:
                c.close()
            s.stop()


def stall(sluice, data, ctl_path):
    tag = "stall"
    prefix = f"ctl-stall-{os.getpid()}"
    ctl = Ctl(ctl_path, prefix)
    with tempdir() as d:
        write(d, "flows.yaml", "version: 1\nrules: []\n")
        cfg = write(d, "sluice.yaml", "ports:\n  - name: in\n    device: \"net_null0,no-rx=1\"\n"
                    "workers:\n  lcores: [1]\n  burst: 32\nflows: flows.yaml\n")
        os.environ["SLUICE_TEST_STALL"] = "0:200"
        try:
            s = Background(sluice, eal(prefix, "0,1"), ["-c", cfg])
        finally:
            del os.environ["SLUICE_TEST_STALL"]
        try:
            if not started(s, tag):
                return
            rc, h, err = until(lambda: ctl.json("health"), lambda r: r[1] and r[1]["status"] == "stalled", 10)
            check(f"{tag}: health --json: stalled (exit 1), worker 0 on lcore 1 stalled for over 1 s, why",
                  rc == 1 and h and h["status"] == "stalled" and h["workers"][0]["stalled"] is True
                  and h["workers"][0]["idle_ms"] > 1000 and "lcore 1" in h["reason"], f"rc={rc} {h} {err}")
            rc, out, err = ctl("health")
            check(f"{tag}: health table: status stalled, exit 1", rc == 1 and rows(out)[0] == ["status", "stalled"]
                  and any(x[:2] == ["0", "1"] and x[-1] == "yes" for x in rows(out)), out + err)
            rc, ws, err = ctl.json("workers")
            check(f"{tag}: workers --json: stalled, idle over 1 s", rc == 0 and ws and ws[0]["stalled"] is True
                  and ws[0]["idle_ms"] > 1000, f"{ws} {err}")
        finally:
            s.proc.kill()  # a hung worker: no clean stop to wait for
            s.stop()


class FakeTelemetry:
    """A socket that speaks DPDK telemetry v2 with a given command table (None: close every
    connection at once, as DPDK does beyond its 10 clients)."""

    def __init__(self, path, commands):
        self.path, self.commands = path, commands
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(path)
        self.sock.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.commands is None:
                c.close()
                continue
            threading.Thread(target=self._client, args=(c,), daemon=True).start()

    def _client(self, c):
        c.send(json.dumps({"version": "DPDK 22.11.0", "pid": os.getpid(), "max_output_len": 16384}).encode())
        while True:
            data = c.recv(1024)
            if not data:
                return c.close()
            cmd = data.decode().split(",", 1)[0]
            value = sorted(self.commands) if cmd == "/" else self.commands.get(cmd)
            c.send(json.dumps({cmd: value}).encode())

    def close(self):
        self.sock.close()


def none(ctl_path):
    tag = "none"
    prefix = f"ctl-none-{os.getpid()}"
    ctl = Ctl(ctl_path, prefix)
    for cmd in (["stats"], ["ports"], ["rules"], ["rules", "a-b"], ["workers"], ["capture"], ["health"], ["reload"]):
        for form in ([], ["--json"]):
            rc, out, err = ctl(*form, *cmd)
            check(f"{tag}: {' '.join(form + cmd)}: exit 1, 'no sluice running with file prefix ...; start it or pass "
                  "--file-prefix'", rc == 1 and out == "" and re.search(
                      rf"^sluice-ctl: no sluice running with file prefix {prefix} \(looked for [^)]*/{prefix}/dpdk_telemetry\.v2"
                      r".*\); start it or pass --file-prefix", err), f"rc={rc} {out!r} {err!r}")
    rc, out, err = ctl("--help")
    check(f"{tag}: --help: exit 0, every command", rc == 0 and all(c in out for c in
                                                                    ("stats", "ports", "rules [NAME]", "workers", "capture", "health", "reload", "--json", "--file-prefix")), out)
    rc, out, err = ctl("bogus")
    check(f"{tag}: an unknown command: usage error (exit 2)", rc == 2 and "invalid choice" in err, err)
    for bad in ("0", "-1", "nan", "soon"):
        rc, out, err = ctl("--timeout", bad, "health")
        check(f"{tag}: --timeout {bad}: usage error (exit 2) naming --timeout, not the 10 s default",
              rc == 2 and out == "" and "argument --timeout" in err, f"rc={rc} {out!r} {err!r}")
    check(f"{tag}: --help: --timeout is more than 0", "more than 0" in ctl("--help")[1], ctl("--help")[1])

    # A socket left behind by a process that is gone.
    d = runtime_dir([f"--file-prefix={prefix}"])
    os.makedirs(d, exist_ok=True)
    try:
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stale.bind(os.path.join(d, "dpdk_telemetry.v2"))
        stale.close()
        rc, out, err = ctl("stats")
        check(f"{tag}: a stale socket: exit 1, 'left over from a process that is gone'",
              rc == 1 and "left over from a process that is gone" in err, f"rc={rc} {err}")
    finally:
        shutil.rmtree(d, ignore_errors=True)

    with tempdir() as t:
        path = os.path.join(t, "tel.sock")
        # --socket: the messages name the socket, never the (unrelated) file prefix.
        for form in ([], ["--json"]):
            rc, out, err = ctl(*form, "--socket", path, "health")
            check(f"{tag}: --socket PATH that does not exist{' (--json)' if form else ''}: exit 1, "
                  "'no sluice telemetry socket at PATH', no prefix",
                  rc == 1 and out == "" and err == f"sluice-ctl: no sluice telemetry socket at {path}\n",
                  f"rc={rc} {out!r} {err!r}")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stale.bind(path)
        stale.close()
        rc, out, err = ctl("--socket", path, "stats")
        check(f"{tag}: --socket PATH left by a process that is gone: exit 1, names the socket, no prefix",
              rc == 1 and "left over from a process that is gone" in err and path in err and "prefix" not in err,
              f"rc={rc} {err}")
        os.unlink(path)
        f = FakeTelemetry(path, {"/info": {}, "/ethdev/list": [0]})
        rc, out, err = ctl("--socket", path, "stats")
        check(f"{tag}: a DPDK process that is not sluice: exit 1, says so", rc == 1 and "is not sluice" in err, f"rc={rc} {err}")
        check(f"{tag}: ... at --socket PATH: names the socket, no prefix", path in err and "prefix" not in err, err)
        f.close()
        os.unlink(path)
        f = FakeTelemetry(path, {"/sluice/stats": {"uptime_ms": 1}, "/sluice/ports": []})
        rc, out, err = ctl("--socket", path, "workers")
        check(f"{tag}: a sluice without /sluice/workers: exit 1, 'does not know /sluice/workers'",
              rc == 1 and "does not know /sluice/workers" in err, f"rc={rc} {err}")
        f.close()
        os.unlink(path)
        f = FakeTelemetry(path, None)
        t0 = time.monotonic()
        rc, out, err = ctl("--socket", path, "--timeout", "1", "stats")
        check(f"{tag}: every telemetry connection taken: exit 75 after retrying ({time.monotonic() - t0:.1f} s), says so",
              rc == EX_TEMPFAIL and "connections are in use; retry" in err, f"rc={rc} {err}")
        f.close()


def main():
    sluice, data, ctl = parse_args()
    for name, session in (("none", lambda: none(ctl)), ("running", lambda: running(sluice, data, ctl)),
                          ("rate", lambda: rate(sluice, data, ctl)), ("stall", lambda: stall(sluice, data, ctl))):
        try:
            session()
        except Exception:  # noqa: BLE001 - a session that breaks fails, and the others still run
            check(f"{name}: ran to its end", False, traceback.format_exc())
    report()


if __name__ == "__main__":
    sys.exit(main())
