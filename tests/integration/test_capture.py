#!/usr/bin/env python3
"""The capture store end to end (issue 9): what sluice writes, read back by pcapng.py (a reader
written from CONTRACT alone), by tshark, tcpdump and capinfos, and by sluice-capture.

exact: mixed.pcap once through data/flows.yaml with capture: true on four rules (a forward
  with mirror, a drop, a drop with mirror, a forward) and capture.malformed: true. The one
  closed segment holds exactly the frames of those rules and every frame failing validation,
  byte for byte in file order, on interface wan, with timestamps inside the run; chunk seqs
  count from 0; the three readers and `sluice-capture verify` accept it; the forwarding
  outputs are still exactly what test_forwarding expects; the capture statistics agree with
  the file to the byte. Then with malformed: false (only the rule packets), and a reload that
  turns capture on for one rule while traffic flows (nothing before it, only that rule's
  frames after it, no packet lost).
rotation: mixed.pcap forever, every packet captured, 1 MiB segments kept under 4 MiB: segment
  names, numbers, sizes and times, retention, chunk seqs across segments, verify, and export
  (everything, a time window, --port, --filter) against the packets in the segments.
bad input: a missing, non-directory and read-only capture.path, capture lcores outside the EAL
  set, the main lcore and a worker lcore, passthru, a chunk size that is no multiple of 4096,
  and capture: true without a capture section: each exits 2 (startup) or 1 (config) with the
  file:line:col and the fix, and leaves nothing behind.
"""
import argparse
import json
import os
import random
import re
import signal
import subprocess
import tempfile
import time
from datetime import datetime, timezone

import pcapng
from packets import read_pcap
from runner import Background, check, pcap_frames, pool_lines_ok, report, run, write
from test_forwarding import OUT_PORTS, expectations

# main lcore 0 on CPU 0, worker lcore 1 on CPU 1, capture lcore 2 sharing CPU 0 with main:
# this runs on two CPUs (lcore 2 of "-l 0,1,2" would need a third).
LCORES = "0@0,1@1,2@0"
CAPTURED_RULES = ["web-to-lan", "drop-telnet", "span-irc", "dns-from-clients"]
NAME = re.compile(r"^sluice-(\d{8}T\d{6}Z)-(\d{6})\.pcapng$")
MIB = 1 << 20


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True, help="the sluice binary")
    ap.add_argument("--data", required=True, help="tests/integration/data")
    ap.add_argument("--sluice-capture", required=True, help="the sluice-capture binary")
    args = ap.parse_args()
    return os.path.abspath(args.sluice), os.path.abspath(args.data), os.path.abspath(args.sluice_capture)


def eal(prefix, lcores=LCORES):
    return [f"--lcores={lcores}", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
            f"--file-prefix={prefix}-{os.getpid()}", "--log-level=lib.eal:error"]


def store_tempdir():
    """A temp dir on a disk filesystem where there is one (/var/tmp): the store's O_DIRECT path,
    not tmpfs's buffered fallback."""
    base = "/var/tmp" if os.path.isdir("/var/tmp") and os.access("/var/tmp", os.W_OK) else None
    return tempfile.TemporaryDirectory(prefix="sluice-it-capture-", dir=base)


def capture_section(path, **keys):
    keys = {"lcore": 2, "path": path, "chunk_bytes": "64KiB", "segment_bytes": "1MiB",
            "retain_bytes": "8MiB", "snaplen": 9000, **keys}
    return "capture:\n" + "".join(f"  {k}: {v}\n" for k, v in keys.items())


def with_capture(flows_text, rules):
    """flows_text with `capture: true` added to each named rule."""
    for r in rules:
        flows_text, n = re.subn(rf"(\n  - name: {re.escape(r)}\b[^\n]*\n)", r"\1    capture: true\n", flows_text)
        assert n == 1, r
    return flows_text


def segment_files(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def store_packets(d):
    """(name, interfaces, packets) of every closed segment, by name (number)."""
    out = []
    for name in segment_files(d):
        if NAME.match(name):
            ifs, pkts = pcapng.read_pcapng(os.path.join(d, name))
            out.append((name, ifs, pkts))
    return out


def sh(cmd, timeout=60):
    """Runs a reader or the tool: (exit code, stdout, stderr); a hang is exit code None."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, "", f"{cmd[0]}: no answer within {timeout} s"
    return p.returncode, p.stdout, p.stderr


def tool(binary, *args):
    return sh([binary, *args])


def verify_json(capture_tool, target):
    rc, out, err = tool(capture_tool, "verify", target, "--json")
    try:
        return rc, json.loads(out), err
    except ValueError:
        return rc, None, f"{out}\n{err}"


def reader_counts(path):
    """Packet counts tshark, tcpdump and capinfos report for path (None where one failed)."""
    got = {}
    rc, out, err = sh(["tshark", "-r", path, "-T", "fields", "-e", "frame.number"])
    got["tshark"] = (rc, len(out.split()), err)
    rc, out, err = sh(["tcpdump", "-r", path, "-n", "-q", "-t"])
    got["tcpdump"] = (rc, len([l for l in out.splitlines() if l.strip()]), err)
    rc, out, err = sh(["capinfos", "-c", "-M", path])
    m = re.search(r"Number of packets:\s+(\d+)", out)
    got["capinfos"] = (rc, int(m.group(1)) if m else None, out + err)
    return got


def forwarding_ports(pcap, d):
    return "\n".join([
        "ports:",
        f"  - name: wan\n    device: \"net_pcap0,rx_pcap={pcap}\"",
        *[f"  - name: {p}\n    device: \"net_pcap{i + 1},tx_pcap={d}/{p}.pcap\"" for i, p in enumerate(OUT_PORTS)],
    ]) + "\nworkers:\n  lcores: [1]\n  burst: 32\nflows: flows.yaml\n"


def exact(sluice, capture_tool, data, malformed):
    tag = "exact" if malformed else "exact-rules-only"
    pcap = os.path.join(data, "mixed.pcap")
    manifest = json.load(open(os.path.join(data, "mixed.expect.json")))
    frames = read_pcap(pcap)
    want_n = [e["n"] for e in manifest if e.get("rule") in CAPTURED_RULES or (malformed and "drop" in e)]
    want = [frames[n] for n in want_n]
    want_out = expectations(manifest, frames)[0]
    with store_tempdir() as d:
        store = os.path.join(d, "store")
        os.mkdir(store)
        write(d, "flows.yaml", with_capture(open(os.path.join(data, "flows.yaml")).read(), CAPTURED_RULES))
        cfg = write(d, "sluice.yaml", forwarding_ports(pcap, d) +
                    capture_section(store, malformed="true" if malformed else "false"))
        stats_path = os.path.join(d, "stats.json")
        t0 = time.time_ns()
        rc, out, err = run(sluice, eal(tag), ["-c", cfg, "--duration", "2", "--stats-out", stats_path])
        t1 = time.time_ns()
        check(f"{tag}: exit 0", rc == 0, f"rc={rc}\n{err[-3000:]}")
        ok, why = pool_lines_ok(err)
        check(f"{tag}: pool full before start and after stop", ok, why + "\n" + err[-3000:])

        files = segment_files(store)
        check(f"{tag}: exactly one closed segment, named as CONTRACT says, no .part",
              len(files) == 1 and NAME.match(files[0]), str(files))
        if len(files) != 1:
            return
        seg = os.path.join(store, files[0])
        try:
            ifs, pkts = pcapng.read_pcapng(seg)
            chunks = pcapng.chunks(seg)
        except (OSError, ValueError, IndexError) as e:
            check(f"{tag}: segment readable by pcapng.py", False, str(e))
            return
        got = [p[2] for p in pkts]
        detail = f"got {len(got)} packets, want {len(want)}"
        for i, (a, b) in enumerate(zip(got, want)):
            if a != b:
                detail += f"; first difference at packet {i}: got {a[:40].hex()} want {b[:40].hex()}"
                break
        if got != want:
            index = {frames[n]: n for n in reversed(want_n)}
            detail += f"\n      got mixed.pcap frames {[index.get(g, '?') for g in got]}\n      want {want_n}"
        check(f"{tag}: the segment holds exactly the {len(want)} expected frames, byte for byte, in order", got == want, detail)
        check(f"{tag}: the segment holds the {len(want)} expected frames, byte for byte, in any order",
              sorted(got) == sorted(want), f"got {len(got)} packets, want {len(want)}")
        check(f"{tag}: every EPB is on interface 0 (wan, the ingress port)", all(p[0] == 0 for p in pkts),
              str(sorted({p[0] for p in pkts})))
        check(f"{tag}: IDB names are the ports in config order", ifs == ["wan"] + OUT_PORTS, str(ifs))
        check(f"{tag}: caplen == original length for every packet (snaplen 9000)",
              all(len(p[2]) == p[3] for p in pkts), str([(len(p[2]), p[3]) for p in pkts if len(p[2]) != p[3]][:5]))
        ts = [p[1] for p in pkts]
        check(f"{tag}: timestamps non-decreasing", all(a <= b for a, b in zip(ts, ts[1:])), str(ts[:10]))
        check(f"{tag}: timestamps are ns since the epoch within the run", ts and t0 <= ts[0] and ts[-1] <= t1,
              f"run {t0}..{t1}, packets {ts[:1]}..{ts[-1:]}")
        seqs = [c[2] for c in chunks]
        check(f"{tag}: chunk seqs count from 0, contiguous", seqs == list(range(len(seqs))) and seqs, str(seqs))
        check(f"{tag}: chunks cover the whole file", sum(c[1] for c in chunks) == os.path.getsize(seg),
              f"{[c[:2] for c in chunks]} vs size {os.path.getsize(seg)}")
        for reader, (rrc, n, why) in reader_counts(seg).items():
            check(f"{tag}: {reader} reads the segment: exit 0, {len(want)} packets", rrc == 0 and n == len(want),
                  f"rc={rrc}, {n} packets\n{why[-1000:]}")
        vrc, v, why = verify_json(capture_tool, store)
        check(f"{tag}: sluice-capture verify: exit 0, every chunk good, {len(want)} packets",
              vrc == 0 and v and v["ok"] and v["totals"]["chunks"] == v["totals"]["good"] == len(chunks)
              and v["totals"]["packets"] == len(want)
              and all(c["state"] == "good" for f in v["files"] for c in f["chunks"]),
              f"rc={vrc}\n{json.dumps(v)[:2000] if v else why}")

        for p in OUT_PORTS:
            try:
                frames_out = read_pcap(os.path.join(d, f"{p}.pcap"))
            except (OSError, ValueError) as e:
                check(f"{tag}: {p}.pcap readable", False, str(e))
                continue
            check(f"{tag}: {p}.pcap still holds exactly the {len(want_out[p])} frames test_forwarding expects",
                  frames_out == want_out[p], f"got {len(frames_out)} frames")
        try:
            s = json.load(open(stats_path))
        except (OSError, ValueError) as e:
            check(f"{tag}: stats JSON written", False, str(e))
            return
        c = s.get("capture", {})
        want_c = {"packets": len(want), "bytes": sum(len(f) for f in want), "chunks": len(chunks), "segments": 1,
                  "dropped": 0, "write_errors": 0, "bytes_written": os.path.getsize(seg)}
        for k, v in want_c.items():
            check(f"{tag}: stats capture.{k} == {v}", c.get(k) == v, f"got {c.get(k)}; capture {c}")
        check(f"{tag}: drops.capture_full == 0", s["drops"].get("capture_full") == 0, str(s["drops"]))


def reload_on(sluice, data):
    """Traffic flows without capture; a reload turns it on for dns-from-clients."""
    tag = "reload"
    rule = "dns-from-clients"
    mirrored = ["web-to-lan", "span-irc", "sigtran"]  # rules whose packets leave twice or, dropped, once
    pcap = os.path.join(data, "mixed.pcap")
    manifest = json.load(open(os.path.join(data, "mixed.expect.json")))
    frames = read_pcap(pcap)
    want = {frames[e["n"]] for e in manifest if e.get("rule") == rule}
    flows = open(os.path.join(data, "flows.yaml")).read()
    with store_tempdir() as d:
        store = os.path.join(d, "store")
        os.mkdir(store)
        write(d, "flows.yaml", flows)
        ports = "ports:\n" + f"  - name: wan\n    device: \"net_pcap0,rx_pcap={pcap},infinite_rx=1\"\n" + "".join(
            f"  - name: {p}\n    device: \"net_null{i},no-rx=1\"\n" for i, p in enumerate(OUT_PORTS))
        cfg = write(d, "sluice.yaml", ports + "workers:\n  lcores: [1]\n  burst: 32\nflows: flows.yaml\n" +
                    capture_section(store, retain_bytes="64MiB", flush_ms=50))
        stats_path = os.path.join(d, "stats.json")
        s = Background(sluice, eal(tag), ["-c", cfg, "--stats-out", stats_path])
        try:
            started = s.wait_for(r"\] running")
            check(f"{tag}: sluice starts", started, "".join(s.lines[-20:]))
            if not started:
                return
            time.sleep(1.0)  # traffic without capture: flush_ms 50 would have written anything taken
            before = segment_files(store)
            check(f"{tag}: nothing in the store before the reload", before == [], str(before))
            t_edit = time.time_ns()
            tmp = write(d, ".flows.yaml.tmp", with_capture(flows, [rule]))
            os.rename(tmp, os.path.join(d, "flows.yaml"))
            s.proc.send_signal(signal.SIGHUP)
            reloaded = s.wait_for(r"reload \((SIGHUP|file change)\): .*generation 2\b")
            check(f"{tag}: the reload is applied (generation 2)", reloaded, "".join(s.lines[-10:]))
            time.sleep(1.0)
        finally:
            rc, log = s.stop()
        check(f"{tag}: exit 0", rc == 0, f"rc={rc}\n{log[-3000:]}")
        ok, why = pool_lines_ok(log, held_at_start=pcap_frames(pcap))
        check(f"{tag}: pool full before start and after stop", ok, why)
        files = segment_files(store)
        check(f"{tag}: closed segments only, named as CONTRACT says", files and all(NAME.match(f) for f in files), str(files))
        try:
            pkts = [p for _, _, ps in store_packets(store) for p in ps]
        except (OSError, ValueError, IndexError) as e:
            check(f"{tag}: segments readable by pcapng.py", False, str(e))
            return
        check(f"{tag}: the store holds {rule}'s packets after the reload", len(pkts) > 0, f"{len(pkts)} packets")
        others = [p[2][:40].hex() for p in pkts if p[2] not in want]
        check(f"{tag}: every captured packet is one of {rule}'s {len(want)} frames", not others,
              f"{len(others)} others, such as {others[:3]}")
        check(f"{tag}: all of {rule}'s frames are captured", {p[2] for p in pkts} == want,
              f"{len({p[2] for p in pkts})} distinct of {len(want)}")
        early = [p[1] for p in pkts if p[1] < t_edit]
        check(f"{tag}: no packet captured from before the flows file changed", not early,
              f"{len(early)} packets stamped before {t_edit}, such as {early[:3]}")
        try:
            st = json.load(open(stats_path))
        except (OSError, ValueError) as e:
            check(f"{tag}: stats JSON written", False, str(e))
            return
        c = st["capture"]
        if c["bytes_written"] <= 56 * MIB:  # nothing deleted yet (retain_bytes less one segment)
            check(f"{tag}: stats capture.packets == EPBs in the store", c["packets"] == len(pkts), f"{len(pkts)} EPBs, {c}")
        else:  # a fast machine: retention deleted the oldest
            check(f"{tag}: stats capture.packets >= EPBs in the store (the oldest deleted)", c["packets"] >= len(pkts),
                  f"{len(pkts)} EPBs, {c}")
        check(f"{tag}: capture.dropped == drops.capture_full (the lcore itself dropped nothing)",
              c["dropped"] == st["drops"]["capture_full"] and c["write_errors"] == 0, f"{c}, {st['drops']}")
        rx = st["ports"]["wan"]["rx_packets"]
        tx = sum(st["ports"][p]["tx_packets"] for p in OUT_PORTS)
        drops = sum(v for k, v in st["drops"].items() if k != "capture_full")  # a capture_full packet still went on
        mirrors = sum(st["rules"].get(r, {}).get("packets", 0) for r in mirrored)
        check(f"{tag}: no packet lost: wan rx + mirror copies == tx + drops (less capture_full)",
              rx > 0 and rx + mirrors == tx + drops, f"rx {rx}, mirrors {mirrors}, tx {tx}, drops {drops}: {st['drops']}")


def rotation(sluice, capture_tool, data):
    tag = "rotation"
    pcap = os.path.join(data, "mixed.pcap")
    with store_tempdir() as d:
        store = os.path.join(d, "store")
        os.mkdir(store)
        write(d, "flows.yaml", "version: 1\nnon_ip: { action: forward, to: out }\ndefault: { action: forward, to: out }\n"
                               "rules:\n  - name: all\n    action: forward\n    to: out\n    capture: true\n")
        cfg = write(d, "sluice.yaml", "ports:\n"
                    f"  - name: wan\n    device: \"net_pcap0,rx_pcap={pcap},infinite_rx=1\"\n"
                    "  - name: out\n    device: \"net_null0,no-rx=1\"\n"
                    "workers:\n  lcores: [1]\n  burst: 32\nflows: flows.yaml\n" +
                    capture_section(store, retain_bytes="4MiB", flush_ms=50))
        stats_path = os.path.join(d, "stats.json")
        rc, out, err = run(sluice, eal(tag), ["-c", cfg, "--duration", "4", "--stats-out", stats_path], timeout=90)
        check(f"{tag}: exit 0", rc == 0, f"rc={rc}\n{err[-3000:]}")
        ok, why = pool_lines_ok(err, held_at_start=pcap_frames(pcap))
        check(f"{tag}: pool full before start and after stop", ok, why)
        try:
            st = json.load(open(stats_path))
        except (OSError, ValueError) as e:
            check(f"{tag}: stats JSON written", False, str(e))
            return
        c = st["capture"]
        check(f"{tag}: more than retain_bytes (4 MiB) was written, so retention had work",
              c["bytes_written"] > 4 * MIB, str(c))
        check(f"{tag}: capture.packets + capture.dropped == rules.all.packets (every copy recorded or counted)",
              c["packets"] + c["dropped"] == st["rules"]["all"]["packets"] > 0, f"{c}, rules {st['rules']}")
        check(f"{tag}: no write errors", c["write_errors"] == 0, str(c))

        files = segment_files(store)
        check(f"{tag}: no .part left, every name as CONTRACT says", files and all(NAME.match(f) for f in files), str(files))
        names = [f for f in files if NAME.match(f)]
        nums = [int(NAME.match(f).group(2)) for f in names]
        check(f"{tag}: segment numbers contiguous", nums == list(range(nums[0], nums[0] + len(nums))) if nums else False, str(nums))
        check(f"{tag}: the oldest segments were deleted (first number > 0)", nums and nums[0] > 0, str(nums))
        check(f"{tag}: segments closed == last number + 1", nums and c["segments"] == nums[-1] + 1, f"{c['segments']} vs {nums[-1:]}")
        sizes = [os.path.getsize(os.path.join(store, f)) for f in names]
        check(f"{tag}: every segment at most 1 MiB and a multiple of 4096",
              sizes and all(0 < z <= MIB and z % 4096 == 0 for z in sizes), str(sizes))
        if not check(f"{tag}: the store holds at most retain_bytes (4 MiB)", sum(sizes) <= 4 * MIB, f"{sum(sizes)}"):
            return  # what follows reads every packet of the store: not a gigabyte of them
        try:
            segs = store_packets(store)
            seqs = [ch[2] for f in names for ch in pcapng.chunks(os.path.join(store, f))]
        except (OSError, ValueError, IndexError) as e:
            check(f"{tag}: segments readable by pcapng.py", False, str(e))
            return
        bad_names = []
        for name, _, pkts in segs:
            first = datetime.fromtimestamp(pkts[0][1] // 10**9, timezone.utc).strftime("%Y%m%dT%H%M%SZ") if pkts else None
            if NAME.match(name).group(1) != first:
                bad_names.append(f"{name}: first packet {first}")
        check(f"{tag}: each name's time is the UTC second of its first packet", not bad_names, str(bad_names[:5]))
        check(f"{tag}: chunk seqs strictly contiguous across the kept segments",
              seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{len(seqs)} chunks: {seqs[:5]}..{seqs[-5:]}")
        vrc, v, why = verify_json(capture_tool, store)
        check(f"{tag}: sluice-capture verify: exit 0, every chunk good",
              vrc == 0 and v and v["ok"] and v["totals"]["good"] == v["totals"]["chunks"] == len(seqs),
              f"rc={vrc}\n{json.dumps(v.get('totals')) if v else why}")
        stored = [(p[1], p[2]) for _, _, pkts in segs for p in pkts]
        by_time = sorted(stored, key=lambda p: p[0])  # stable: the store's order among equal times

        def export(name, *opts):
            path = os.path.join(d, name)
            erc, eout, eerr = tool(capture_tool, "export", store, "-o", path, *opts)
            try:
                ifs, pkts = pcapng.read_pcapng(path)
                shbs = sum(1 for _, t, _ in pcapng.blocks(open(path, "rb").read()) if t == pcapng.SHB)
            except (OSError, ValueError, IndexError) as e:
                return erc, eerr, None, None, 0, path
            return erc, eerr, ifs, [(p[1], p[2]) for p in pkts], shbs, path

        erc, eerr, ifs, got, shbs, path = export("all.pcapng")
        check(f"{tag}: export: exit 0, one section", erc == 0 and shbs == 1, f"rc={erc}, {shbs} SHBs\n{eerr}")
        if got is None:
            check(f"{tag}: export readable by pcapng.py", False, eerr)
            return
        trc, tout, terr = sh(["tshark", "-r", path, "-T", "fields", "-e", "frame.number"])
        n = len(tout.split())
        check(f"{tag}: export: tshark reads it, {len(stored)} packets (all EPBs of the kept segments)",
              trc == 0 and n == len(stored) > 0, f"rc={trc}, {n} packets\n{terr[-1000:]}")
        check(f"{tag}: export: timestamps non-decreasing", all(a[0] <= b[0] for a, b in zip(got, got[1:])))
        check(f"{tag}: export: exactly the stored packets in time order", got == by_time,
              f"got {len(got)}, want {len(by_time)}")
        check(f"{tag}: export: one interface, wan", ifs == ["wan"], str(ifs))

        lo, hi = by_time[len(by_time) // 3][0], by_time[2 * len(by_time) // 3][0]
        want = [q for q in by_time if lo <= q[0] < hi]
        rfc = datetime.fromtimestamp(lo // 10**9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{lo % 10**9:09d}Z"
        erc, eerr, _, got, _, _ = export("window.pcapng", "--from", rfc, "--to", f"{hi // 10**9}.{hi % 10**9:09d}")
        check(f"{tag}: export --from (RFC 3339) --to (epoch): exactly the {len(want)} packets in [from, to)",
              erc == 0 and got == want and 0 < len(want) < len(by_time), f"rc={erc}, got {None if got is None else len(got)}\n{eerr}")
        erc, eerr, _, got, _, _ = export("wan.pcapng", "--port", "wan")
        check(f"{tag}: export --port wan: every packet", erc == 0 and got == by_time, f"rc={erc}\n{eerr}")
        erc, eerr, _, got, _, path = export("out.pcapng", "--port", "out")
        check(f"{tag}: export --port out: no packet (none arrived on out), exit 0", erc == 0 and got == [],
              f"rc={erc}, got {None if got is None else len(got)}\n{eerr}")
        trc, tout, terr = sh(["tshark", "-r", path, "-T", "fields", "-e", "frame.number"])
        check(f"{tag}: export --port out: tshark reads the empty export (exit 0, no packet)",
              trc == 0 and tout.split() == [], f"rc={trc}\n{terr[-1000:]}")
        erc, eerr, _, got, _, _ = export("udp.pcapng", "--filter", "udp")
        ref = os.path.join(d, "udp-ref.pcap")
        trc, _, terr = sh(["tcpdump", "-r", os.path.join(d, "all.pcapng"), "-w", ref, "udp"])
        want = read_pcap(ref) if trc == 0 else None
        check(f"{tag}: export --filter udp: exactly the packets tcpdump's udp filter keeps",
              erc == 0 and got is not None and want and [q[1] for q in got] == want,
              f"rc={erc}, got {None if got is None else len(got)}, tcpdump {None if want is None else len(want)}\n{eerr}{terr}")
        own = [q for q in by_time if is_udp(q[1])]
        check(f"{tag}: export --filter udp: as many as our own count of UDP frames",
              got is not None and len(got) == len(own) > 0, f"got {None if got is None else len(got)}, own {len(own)}")
        erc, eerr, _, _, _, _ = export("bad.pcapng", "--filter", "udp and")
        check(f"{tag}: export --filter with a bad expression: exit 2 naming it", erc == 2 and "bad --filter" in eerr, f"rc={erc}\n{eerr}")

        # Random single-bit flips in the closed segments, one in each of up to 20 chunks: verify
        # reports exactly those chunks corrupt, and export leaves out exactly their packets.
        rng = random.Random(4)
        chunk_list = [(f, ch) for f in names for ch in pcapng.chunks(os.path.join(store, f))]
        victims = rng.sample(chunk_list, min(20, len(chunk_list) // 2))
        lost = []
        for f, (off, length, _, _) in victims:
            p = os.path.join(store, f)
            data = bytearray(open(p, "rb").read())
            part = os.path.join(d, "victim.pcapng")
            with open(part, "wb") as out:
                out.write(data[off:off + length])
            lost += [(q[1], q[2]) for q in pcapng.read_pcapng(part)[1]]
            bit = rng.randrange(length * 8)
            data[off + bit // 8] ^= 1 << (bit % 8)
            with open(p, "wb") as out:
                out.write(data)
        vrc, v, why = verify_json(capture_tool, store)
        reported = {(os.path.basename(fj["path"]), c["offset"]): c["state"] for fj in (v or {}).get("files", [])
                    for c in fj["chunks"] if c["state"] != "good"}
        want_bad = {(f, ch[0]) for f, ch in victims}
        check(f"{tag}: {len(victims)} single-bit flips: verify exits 1 and reports exactly those chunks, all corrupt",
              vrc == 1 and set(reported) == want_bad and set(reported.values()) == {"corrupt"},
              f"rc={vrc}, reported {sorted(reported.items())[:5]}, flipped {sorted(want_bad)[:5]}\n{why}")
        erc, eerr, _, got, _, _ = export("flipped.pcapng")
        lost_set = {}
        for q in lost:
            lost_set[q] = lost_set.get(q, 0) + 1
        keep = []
        for q in by_time:
            if lost_set.get(q, 0) > 0:
                lost_set[q] -= 1
                continue
            keep.append(q)
        check(f"{tag}: export skips exactly the {len(lost)} packets of the corrupt chunks (exit 1: chunks were skipped)",
              erc == 1 and got == keep and len(keep) == len(by_time) - len(lost),
              f"rc={erc}, got {None if got is None else len(got)}, want {len(keep)}\n{eerr[-500:]}")


def is_udp(f):
    """libpcap's `udp` on Ethernet: IPv4 protocol 17, or IPv6 next header 17 (also after a fragment header)."""
    if len(f) < 14:
        return False
    et = int.from_bytes(f[12:14], "big")
    if et == 0x0800:
        return len(f) > 23 and f[23] == 17
    if et == 0x86DD:
        return len(f) > 20 and (f[20] == 17 or (f[20] == 44 and len(f) > 54 and f[54] == 17))
    return False


def bad_input(sluice, data):
    pcap = os.path.join(data, "mixed.pcap")
    ports = ("ports:\n"
             f"  - name: in\n    device: \"net_pcap0,rx_pcap={pcap}\"\n"
             "  - name: out\n    device: \"net_null0,no-rx=1\"\n"
             "workers:\n  lcores: [1]\n  burst: 32\nflows: flows.yaml\n")
    flows = "version: 1\nnon_ip: { action: forward, to: out }\ndefault: { action: forward, to: out }\nrules: []\n"
    with store_tempdir() as d:
        write(d, "flows.yaml", flows)

        def line_of(text, key):
            return next(i + 1 for i, l in enumerate(text.splitlines()) if l.strip().startswith(key + ":"))

        def attempt(tag, store, want_rc, fix, key, prefix_re="", **keys):
            """key: the key whose line the message must name; a list: any of those keys' lines."""
            text = ports + capture_section(store, **keys)
            cfg = write(d, f"{tag}.yaml", text)
            before = segment_files(store)
            rc, out, err = run(sluice, eal(tag), ["-c", cfg, "--duration", "1"])
            check(f"{tag}: exit {want_rc}", rc == want_rc, f"rc={rc}\n{err[-2000:]}")
            lines = [line_of(text, k) for k in (key if isinstance(key, list) else [key])]
            where = f"{re.escape(cfg)}:({'|'.join(map(str, lines))}):\\d+: {prefix_re}"
            check(f"{tag}: names {os.path.basename(cfg)}:{'|'.join(map(str, lines))}:col and the fix ({fix})",
                  re.search(where, err) and fix in err, err[-2000:])
            check(f"{tag}: nothing left in the store", segment_files(store) == before, str(segment_files(store)))
            if "mbufs x" in err:  # the pool was made: every mbuf back, no crash
                check(f"{tag}: every mbuf back after the failed start", re.search(r"mempool: all \d+ mbufs returned", err), err[-2000:])
            check(f"{tag}: no crash", rc >= 0 and "Segmentation" not in err and "Aborted" not in err, f"rc={rc}")

        store = os.path.join(d, "store")
        os.mkdir(store)
        missing = os.path.join(d, "missing")
        attempt("path-missing", missing, 2, f"mkdir -p {missing}", "path", r"capture\.path: ")
        check("path-missing: the directory is not created behind the user's back", not os.path.exists(missing))
        regular = write(d, "regular-file", "not a directory\n")
        attempt("path-file", regular, 2, "is not a directory", "path", r"capture\.path: ")
        check("path-file: the file is untouched", open(regular).read() == "not a directory\n")

        if os.geteuid() == 0:
            ro = os.path.join(d, "ro")
            os.mkdir(ro)
            p = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro], capture_output=True, text=True)
            if p.returncode == 0:
                try:
                    attempt("path-readonly", ro, 2, "make it writable", "path", r"capture\.path: ")
                finally:
                    subprocess.run(["umount", ro], capture_output=True)
                check("path-readonly: unmounted afterwards", not os.path.ismount(ro))
            else:
                print(f"SKIPPED: capture.path on a read-only filesystem: mount failed: {p.stderr.strip()}")
        else:
            print("SKIPPED: capture.path on a read-only filesystem: needs root to mount a read-only tmpfs")

        attempt("lcore-outside-eal", store, 2, "add it to EAL's -l", "lcore", r"capture\.lcore: lcore 3 is not in the EAL lcore set", lcore=3)
        attempt("lcore-main", store, 2, "give the capture loop an lcore of its own", "lcore", r"capture\.lcore: lcore 0 is the EAL main lcore", lcore=0)
        attempt("backend-passthru", store, 2, "needs a namespace's generic char device /dev/ngXnY", "backend",
                r"capture\.backend: passthru: capture\.path .* is a directory, not an NVMe device", backend="passthru")
        attempt("backend-passthru-file", regular, 2, "needs a namespace's generic char device /dev/ngXnY", "backend",
                r"capture\.backend: passthru: capture\.path .* is a regular file, not an NVMe device", backend="passthru")
        check("backend-passthru-file: the file is untouched", open(regular).read() == "not a directory\n")
        # A character device that is no NVMe namespace: auto tries passthrough and says why not.
        attempt("path-chardev", "/dev/null", 2, "name a namespace's generic char device /dev/ngXnY", "path",
                r"capture\.path: capture\.backend: auto chose NVMe passthrough for a char device: /dev/null is not an NVMe device")
        attempt("backend-uring-chardev", "/dev/null", 2, "use backend: passthru or auto", "path",
                r"capture\.path: /dev/null is a character device", backend="uring")
        attempt("lcore-worker", store, 1, "expected an lcore of its own", "lcore", r"capture\.lcore: lcore 1 is also a worker lcore", lcore=1)
        attempt("chunk-1000", store, 1, "expected at least 8192 bytes", "chunk_bytes", r"capture\.chunk_bytes: 1000 is too small", chunk_bytes=1000)
        attempt("chunk-10000", store, 1, "is not a multiple of 4096", "chunk_bytes", r"capture\.chunk_bytes: 10000", chunk_bytes=10000)

        # capture: true on a rule while the appliance has no capture section.
        cfg = write(d, "no-section.yaml", ports)
        nflows = flows.replace("rules: []\n", "rules:\n  - name: web\n    match: { proto: tcp, dst_port: 80 }\n"
                                              "    action: forward\n    to: out\n    capture: true\n")
        write(d, "flows.yaml", nflows)
        rc, out, err = run(sluice, eal("nosec"), ["-c", cfg, "--duration", "1"])
        check("capture: true without a capture section: exit 1", rc == 1, f"rc={rc}\n{err[-2000:]}")
        check("capture: true without a capture section: names flows.yaml:9:col and the missing section",
              re.search(re.escape(os.path.join(d, "flows.yaml")) + r":9:\d+: .*has no capture section", err), err[-2000:])
        write(d, "flows.yaml", flows)


def main():
    sluice, data, capture_tool = parse_args()
    started = time.monotonic()
    exact(sluice, capture_tool, data, malformed=True)
    exact(sluice, capture_tool, data, malformed=False)
    reload_on(sluice, data)
    rotation(sluice, capture_tool, data)
    bad_input(sluice, data)
    print(f"capture tests took {time.monotonic() - started:.1f} s")
    report()


if __name__ == "__main__":
    main()
