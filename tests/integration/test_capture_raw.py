#!/usr/bin/env python3
"""The raw-device capture store (issue 12, acceptance 3 and 4) on loop devices
(`losetup --direct-io=on`) through the io_uring block backend. Needs root (losetup): without it,
SKIPPED and exit 77.

exact: mixed.pcap once through sluice with capture rules and capture.malformed: true onto a fresh
  device (format: true): `sluice-capture export` of the device, read by tshark, holds exactly the
  expected frames byte for byte in order; verify says every chunk good with seqs 0..n-1 in
  slots 0..n-1, each chunk a full slot; the counters match. A second run finds the store again
  (format: true does not erase a store) and continues the sequence: no chunk lost or duplicated,
  both runs' frames exported.
wrap: an 8 MiB device of 64 KiB chunks (127 slots) with every packet captured until the ring went
  round at least twice: the device holds exactly the newest 127 chunks (the oldest were
  overwritten), contiguous, every one good, export readable by tshark; a restart (mixed.pcap
  once: a few chunks) finds the newest chunk by reading a few slots and continues right after
  it, so the ring holds both runs' chunks, contiguous.
kill -9: sluice killed while it captures into a wrapping ring, 8 times with restarts: after each,
  the restart continues right after the newest good chunk, no seq is on the device twice, every
  chunk not good is one of the writes a kill can leave in flight, and tshark reads the export;
  a clean run after the last kill leaves every slot good and contiguous.
bit flips: 20 single-bit flips in 20 slots of a full ring (written through the device): verify
  reports exactly those 20 chunks not good (100%), and export leaves out exactly their packets.
bad input: a regular file without the raw header, a device smaller than the header and two
  chunks, foreign data without format: true, a store of another chunk size: each exit 2 with the
  fix named, and the bytes untouched.
"""
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

from packets import read_pcap
from runner import Background, check, pcap_frames, pool_lines_ok, remove_runtime_dir, report, run, write
from test_capture import (CAPTURED_RULES, capture_section, eal, forwarding_ports, parse_args, sh,
                          store_tempdir, verify_json, with_capture)

KIB = 1 << 10
MIB = 1 << 20


class Loop:
    """A loop device with direct I/O over an image file; detached on exit, also on failure."""

    def __init__(self, image, size, fill=None):
        with open(image, "wb") as f:
            if fill is not None:
                f.write(fill)
            f.truncate(size)
        self.image = image
        self.dev = None

    def __enter__(self):
        p = subprocess.run(["losetup", "--direct-io=on", "-f", "--show", self.image],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError(f"losetup failed: {p.stderr.strip()}")
        self.dev = p.stdout.strip()
        return self.dev

    def __exit__(self, *exc):
        if self.dev:
            subprocess.run(["losetup", "-d", self.dev], capture_output=True, timeout=30)
        return False


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def good_chunks(v):
    return [c for f in v["files"] for c in f["chunks"]] if v else []


def tshark_frames(path, d):
    """The frames of path as tshark reads them (written back out by tshark as pcap)."""
    out = os.path.join(d, "tshark.pcap")
    rc, _, err = sh(["tshark", "-r", path, "-F", "pcap", "-w", out])
    if rc != 0:
        return None, err
    return read_pcap(out), ""


def capture_stats(tag, path):
    """The capture object of a --stats-out file, or None (a failed check) when there is none."""
    try:
        return json.load(open(path))["capture"]
    except (OSError, ValueError, KeyError) as e:
        check(f"{tag}: stats JSON with a capture object written", False, str(e))
        return None


def export(capture_tool, dev, d, name):
    out = os.path.join(d, name)
    rc, _, err = sh([capture_tool, "export", dev, "-o", out])
    return rc, out, err


def exact(sluice, capture_tool, data):
    tag = "exact"
    pcap = os.path.join(data, "mixed.pcap")
    manifest = json.load(open(os.path.join(data, "mixed.expect.json")))
    frames = read_pcap(pcap)
    want = [frames[e["n"]] for e in manifest if e.get("rule") in CAPTURED_RULES or "drop" in e]
    chunk = 64 * KIB
    with store_tempdir() as d, Loop(os.path.join(d, "dev.img"), 16 * MIB) as dev:
        write(d, "flows.yaml", with_capture(open(os.path.join(data, "flows.yaml")).read(), CAPTURED_RULES))
        cfg = write(d, "sluice.yaml", forwarding_ports(pcap, d) +
                    capture_section(dev, malformed="true", format="true"))
        stats_path = os.path.join(d, "stats.json")
        rc, out, err = run(sluice, eal(tag), ["-c", cfg, "--duration", "2", "--stats-out", stats_path])
        check(f"{tag}: exit 0", rc == 0, f"rc={rc}\n{err[-3000:]}")
        check(f"{tag}: the log says the device was formatted as a new store",
              re.search(r"formatted .* as a new store", err), err[-2000:])
        ok, why = pool_lines_ok(err)
        check(f"{tag}: pool full before start and after stop", ok, why)

        vrc, v, why = verify_json(capture_tool, dev)
        chunks = good_chunks(v)
        check(f"{tag}: sluice-capture verify on the device: exit 0, every chunk good, {len(want)} packets",
              vrc == 0 and v and v["ok"] and chunks and all(c["state"] == "good" for c in chunks)
              and v["totals"]["packets"] == len(want), f"rc={vrc}\n{json.dumps(v)[:2000] if v else why}")
        seqs = [c["seq"] for c in chunks]
        check(f"{tag}: chunk seqs 0..n-1", seqs == list(range(len(seqs))) and seqs, str(seqs))
        check(f"{tag}: chunk seq s fills slot s (offset 4096 + s * 64 KiB, 64 KiB long)",
              all(c["offset"] == 4096 + c["seq"] * chunk and c["length"] == chunk for c in chunks),
              str([(c["seq"], c["offset"], c["length"]) for c in chunks][:10]))

        erc, path, err2 = export(capture_tool, dev, d, "export.pcapng")
        check(f"{tag}: sluice-capture export of the device: exit 0", erc == 0, err2[-1000:])
        got, terr = tshark_frames(path, d)
        check(f"{tag}: tshark reads the export", got is not None, terr[-1000:])
        detail = f"got {len(got or [])} frames, want {len(want)}"
        check(f"{tag}: tshark finds exactly the {len(want)} expected frames, byte for byte, in order",
              got == want, detail)

        c = capture_stats(tag, stats_path)
        if c is None:
            return
        want_c = {"packets": len(want), "bytes": sum(len(f) for f in want), "chunks": len(chunks),
                  "dropped": 0, "write_errors": 0, "bytes_written": len(chunks) * chunk}
        for k, val in want_c.items():
            check(f"{tag}: stats capture.{k} == {val}", c.get(k) == val, f"got {c.get(k)}; capture {c}")

        # The restart: the store is found again (format: true leaves a store alone) and the
        # sequence goes on.
        rc, out, err = run(sluice, eal(tag + "-restart"), ["-c", cfg, "--duration", "2", "--stats-out", stats_path])
        check(f"restart: exit 0", rc == 0, f"rc={rc}\n{err[-3000:]}")
        n1 = len(chunks)
        check(f"restart: the log says where the ring left off (seq {n1 - 1}) and that it continues at {n1}",
              re.search(rf"newest chunk seq {n1 - 1} in slot {n1 - 1}, continuing at seq {n1}", err)
              and not re.search(r"formatted", err), err[-2000:])
        vrc, v, why = verify_json(capture_tool, dev)
        chunks2 = good_chunks(v)
        seqs = [c["seq"] for c in chunks2]
        check("restart: verify: exit 0, every chunk good",
              vrc == 0 and v and v["ok"] and all(c["state"] == "good" for c in chunks2), why[-1000:] if why else "")
        check("restart: seqs contiguous from 0 across both runs: none lost, none duplicated",
              seqs == list(range(len(seqs))) and len(seqs) > n1, str(seqs))
        erc, path, err2 = export(capture_tool, dev, d, "export2.pcapng")
        got, terr = tshark_frames(path, d)
        check(f"restart: tshark reads both runs' {2 * len(want)} frames from the export, byte for byte",
              erc == 0 and got == want + want, f"rc={erc}, got {len(got or [])} frames; {err2[-500:]}{terr[-500:]}")


FLOWS_ALL = ("version: 1\nnon_ip: { action: forward, to: out }\ndefault: { action: forward, to: out }\n"
             "rules:\n  - name: all\n    action: forward\n    to: out\n    capture: true\n")


def wan_out(data, forever=True):
    """mixed.pcap in on wan (forever: replayed until sluice stops), out to net_null."""
    pcap = os.path.join(data, "mixed.pcap")
    return ("ports:\n"
            f"  - name: wan\n    device: \"net_pcap0,rx_pcap={pcap}{',infinite_rx=1' if forever else ''}\"\n"
            "  - name: out\n    device: \"net_null0,no-rx=1\"\n"
            "workers:\n  lcores: [1]\n  burst: 32\nflows: flows.yaml\n")


def kill9(sluice, capture_tool, data):
    tag = "kill9"
    chunk, size = 64 * KIB, 8 * MIB
    slots = (size - 4096) // chunk
    rng = random.Random(12)
    with store_tempdir() as d, Loop(os.path.join(d, "dev.img"), size) as dev:
        write(d, "flows.yaml", FLOWS_ALL)
        cfg = write(d, "sluice.yaml", wan_out(data) + capture_section(dev, format="true", flush_ms=50))
        newest = None  # the newest good seq on the device after the last kill
        bad = []
        for i in range(8):
            e = eal(f"{tag}{i}")
            bg = Background(sluice, e, ["-c", cfg])
            started = bg.wait_for(r"capture: raw store .*continuing at chunk", timeout=60)
            log = "".join(bg.lines)
            if newest is not None:
                m = re.search(r"continuing at seq (\d+)", log)
                if not (m and int(m.group(1)) == newest + 1):
                    bad.append(f"run {i}: continued at {m.group(1) if m else '?'}, newest good was {newest}")
            time.sleep(0.4 + rng.random() * 0.8)
            bg.proc.send_signal(signal.SIGKILL)
            bg.proc.wait()
            bg.reader.join(timeout=10)
            remove_runtime_dir(e)
            if not started:
                bad.append(f"run {i}: did not start: {''.join(bg.lines)[-1500:]}")
                break
            vrc, v, why = verify_json(capture_tool, dev)
            chunks = good_chunks(v)
            good = [c["seq"] for c in chunks if c["state"] == "good"]
            not_good = [c for c in chunks if c["state"] != "good"]
            if not good:
                bad.append(f"run {i}: no good chunk: {why[-500:]}")
                break
            if len(set(good)) != len(good):
                bad.append(f"run {i}: a seq twice on the device")
            if len(not_good) > 32 + 2:
                bad.append(f"run {i}: {len(not_good)} chunks not good, more than the writes in flight")
            if newest is not None and max(good) <= newest:
                bad.append(f"run {i}: nothing new written ({max(good)} <= {newest})")
            newest = max(good)
            erc, path, err = export(capture_tool, dev, d, "export.pcapng")
            got, terr = tshark_frames(path, d)
            if got is None or erc not in (0, 1) or len(got) != sum(c["packets"] for c in chunks if c["state"] == "good"):
                bad.append(f"run {i}: export rc={erc}, tshark read {len(got or [])} frames: {terr[-300:]}")
        check(f"{tag}: 8 kills: each restart continues right after the newest good chunk, no seq twice, "
              "at most the writes in flight not good, tshark reads every export", not bad and newest is not None,
              "\n      ".join(bad))
        stats_path = os.path.join(d, "stats.json")
        rc, out, err = run(sluice, eal(tag + "-clean"), ["-c", cfg, "--duration", "2", "--stats-out", stats_path], timeout=90)
        check(f"{tag}: a clean run after the kills continues at {newest + 1 if newest is not None else '?'}",
              rc == 0 and newest is not None and f"continuing at seq {newest + 1} " in err, f"rc={rc}\n{err[-1500:]}")
        vrc, v, why = verify_json(capture_tool, dev)
        seqs = [c["seq"] for c in good_chunks(v)]
        check(f"{tag}: after it every one of the {slots} slots is good, seqs contiguous",
              vrc == 0 and len(seqs) == slots and seqs == list(range(seqs[0], seqs[0] + slots)), f"rc={vrc}; {why[-500:] if why else ''}")

        # Bit flips in the full ring, written through the device (the tool reads it through the
        # same page cache).
        tag = "bitflips"
        before = {c["offset"]: c for c in good_chunks(v)}
        total = sum(c["packets"] for c in before.values())
        flipped = rng.sample(sorted(before), 20)
        fd = os.open(dev, os.O_RDWR)
        try:
            for off in flipped:
                at = off + rng.randrange(chunk)
                b = os.pread(fd, 1, at)
                os.pwrite(fd, bytes([b[0] ^ (1 << rng.randrange(8))]), at)
            os.fsync(fd)
        finally:
            os.close(fd)
        vrc, v, why = verify_json(capture_tool, dev)
        reported = sorted(c["offset"] for c in good_chunks(v) if c["state"] != "good")
        check(f"{tag}: verify reports exactly the 20 flipped chunks not good (exit 1)",
              vrc == 1 and reported == sorted(flipped), f"rc={vrc}; reported {reported}, flipped {sorted(flipped)}")
        lost = sum(before[o]["packets"] for o in flipped)
        erc, path, err = export(capture_tool, dev, d, "flipped.pcapng")
        got, terr = tshark_frames(path, d)
        check(f"{tag}: export leaves out exactly their {lost} packets (exit 1: chunks were skipped)",
              erc == 1 and got is not None and len(got) == total - lost, f"rc={erc}, {len(got or [])} frames, want {total - lost}")


def wrap(sluice, capture_tool, data):
    tag = "wrap"
    pcap = os.path.join(data, "mixed.pcap")
    chunk, size = 64 * KIB, 8 * MIB
    slots = (size - 4096) // chunk
    with store_tempdir() as d, Loop(os.path.join(d, "dev.img"), size) as dev:
        write(d, "flows.yaml", FLOWS_ALL)
        cfg = write(d, "sluice.yaml", wan_out(data) + capture_section(dev, format="true", flush_ms=50))
        stats_path = os.path.join(d, "stats.json")
        rc, out, err = run(sluice, eal(tag), ["-c", cfg, "--duration", "3", "--stats-out", stats_path], timeout=90)
        check(f"{tag}: exit 0", rc == 0, f"rc={rc}\n{err[-3000:]}")
        ok, why = pool_lines_ok(err, held_at_start=pcap_frames(pcap))
        check(f"{tag}: pool full before start and after stop", ok, why)
        c = capture_stats(tag, stats_path)
        if c is None:
            return
        written = c["chunks"]
        check(f"{tag}: the ring went round at least twice ({written} chunks into {slots} slots)",
              written > 2 * slots, str(written))
        vrc, v, why = verify_json(capture_tool, dev)
        chunks = good_chunks(v)
        seqs = [c["seq"] for c in chunks]
        check(f"{tag}: verify after the wrap: exit 0, all {slots} slots hold good chunks",
              vrc == 0 and v and v["ok"] and len(chunks) == slots and all(c["state"] == "good" for c in chunks),
              f"rc={vrc}, {len(chunks)} chunks; {why[-500:] if why else ''}")
        check(f"{tag}: the device holds exactly the newest {slots} chunks, oldest first: "
              f"seqs {written - slots}..{written - 1} (the oldest were overwritten)",
              seqs == list(range(written - slots, written)), f"{seqs[:3]}..{seqs[-3:]}")
        check(f"{tag}: seq s is in slot s % {slots}",
              all(c["offset"] == 4096 + (c["seq"] % slots) * chunk for c in chunks), "")
        erc, path, err2 = export(capture_tool, dev, d, "export.pcapng")
        got, terr = tshark_frames(path, d)
        check(f"{tag}: tshark reads the export of the wrapped ring: {v['totals']['packets'] if v else '?'} frames",
              erc == 0 and got is not None and v and len(got) == v["totals"]["packets"],
              f"rc={erc}, {len(got or [])} frames; {err2[-500:]}{terr[-500:]}")

        # mixed.pcap once now: a few chunks, so the ring holds both runs' chunks.
        cfg = write(d, "once.yaml", wan_out(data, forever=False) + capture_section(dev, format="true", flush_ms=50))
        rc, out, err = run(sluice, eal(tag + "-restart"), ["-c", cfg, "--duration", "1", "--stats-out", stats_path], timeout=90)
        check(f"{tag}: restart: exit 0", rc == 0, f"rc={rc}\n{err[-3000:]}")
        check(f"{tag}: restart: found the newest chunk {written - 1} by reading a few slots, not all {slots}",
              (m := re.search(rf"continuing at seq {written} \(read (\d+) slots\)", err)) and int(m.group(1)) < slots // 2,
              err[-2000:])
        c = capture_stats(tag + ": restart", stats_path)
        if c is None:
            return
        more = c["chunks"]
        vrc, v, why = verify_json(capture_tool, dev)
        seqs = [c["seq"] for c in good_chunks(v)]
        total = written + more
        check(f"{tag}: restart: the ring holds seqs {total - slots}..{total - 1}, contiguous across the restart",
              vrc == 0 and 0 < more < slots and seqs == list(range(total - slots, total)), f"{more} more; {seqs[:3]}..{seqs[-3:]}")


def bad_input(sluice, data):
    ports = wan_out(data, forever=False)
    flows = FLOWS_ALL.replace("    capture: true\n", "")
    with store_tempdir() as d:
        write(d, "flows.yaml", flows)

        def attempt(tag, path, image, fix, **keys):
            cfg = write(d, f"{tag}.yaml", ports + capture_section(path, **keys))
            before = digest(image)
            rc, out, err = run(sluice, eal(tag), ["-c", cfg, "--duration", "1"])
            check(f"{tag}: exit 2", rc == 2, f"rc={rc}\n{err[-2000:]}")
            check(f"{tag}: names the path's line and the fix ({fix})",
                  re.search(rf"{re.escape(cfg)}:\d+:\d+: capture.path: ", err) and fix in err, err[-2000:])
            check(f"{tag}: the bytes are untouched", digest(image) == before, "")

        plain = os.path.join(d, "plain.img")
        with open(plain, "wb") as f:
            f.write(os.urandom(1 * MIB))
        attempt("regular-file", plain, plain, "a block device for the raw-device store")

        small = os.path.join(d, "small.img")
        with Loop(small, 4096 + 2 * 64 * KIB - 4096) as dev:
            attempt("too-small", dev, small, "less than the store's header and two chunks", format="true")

        foreign = os.path.join(d, "foreign.img")
        with Loop(foreign, 8 * MIB, fill=os.urandom(8 * MIB)) as dev:
            attempt("foreign", dev, foreign, "add capture.format: true")

        # A bad format value is a config error (exit 1) at its line, before anything is opened.
        cfg = write(d, "badformat.yaml", ports + capture_section(plain, format="maybe"))
        line = next(i + 1 for i, l in enumerate(open(cfg).read().splitlines()) if l.strip().startswith("format:"))
        rc, out, err = run(sluice, eal("badformat"), ["-c", cfg, "--duration", "1"])
        check("bad-format-value: exit 1 naming its file:line", rc == 1 and re.search(rf"{re.escape(cfg)}:{line}:\d+", err),
              f"rc={rc}\n{err[-1500:]}")

        other = os.path.join(d, "other.img")
        with Loop(other, 8 * MIB) as dev:
            cfg = write(d, "make.yaml", ports + capture_section(dev, format="true", chunk_bytes="128KiB", snaplen=1500))
            rc, out, err = run(sluice, eal("make"), ["-c", cfg, "--duration", "1"])
            check("other-chunk-size: a store of 128 KiB chunks made", rc == 0, f"rc={rc}\n{err[-2000:]}")
            attempt("other-chunk-size", dev, other, "set capture.chunk_bytes: 128KiB", format="true")


def main():
    sluice, data, capture_tool = parse_args()
    if os.geteuid() != 0:
        print("SKIPPED: the raw-device store test needs root (losetup)")
        sys.exit(77)
    if subprocess.run(["which", "losetup"], capture_output=True).returncode != 0:
        print("SKIPPED: losetup is not installed (util-linux/mount)")
        sys.exit(77)
    exact(sluice, capture_tool, data)
    wrap(sluice, capture_tool, data)
    kill9(sluice, capture_tool, data)
    bad_input(sluice, data)
    report()


if __name__ == "__main__":
    main()
