#!/usr/bin/env python3
"""The capture store under crashes and a full filesystem (CONTRACT "Capture store").

kill -9 loop: mixed.pcap replays forever through a rule with capture: true; sluice is killed
with SIGKILL at a random moment after it wrote something, twenty times. After each kill the
store is repaired, by turns with `sluice-capture repair` and by sluice's own startup repair
(the next start), and checked: no .part left, every chunk good, each former .part cut
exactly after its run of good chunks from its start (none of those lost, nothing after them
kept), no chunk seq twice, seqs contiguous in segment order (a gap only inside the window of
chunks that were in flight at a crash), each start continuing at the last good seq + 1, and
tshark reading the repaired segments. A kill -9 leaves whole chunks on this kernel (writes
already submitted complete), so some iterations also damage the newest .part the way a power
loss would (a torn last chunk, a corrupt chunk in the middle, an unwritten tail) to make the
repair cut.

Full filesystem (root: a 6 MiB tmpfs): capture starts on a full filesystem, space returns
after 1.5 s; writes fail, are dropped and counted, logged once, forwarding loses nothing and
keeps its rate, capture resumes, retention keeps the store inside the filesystem, and every
chunk left is good.
"""
import argparse
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pcapng  # noqa: E402
from runner import check, eal_args, pcap_frames, pool_lines_ok, remove_runtime_dir, report, run, write  # noqa: E402

# This VM has two CPUs: lcore 2 (the capture loop) shares CPU 0 with the main lcore.
LCORES = "--lcores=0@0,1@1,2@0"
KILL_ITERATIONS = int(os.environ.get("SLUICE_CRASH_KILLS", "20"))
SEG_RE = re.compile(r"^sluice-(\d{8}T\d{6}Z)-(\d+)\.pcapng(\.part)?$")
FLOWS_CAPTURE = ("version: 1\nnon_ip: {action: forward, to: out}\ndefault: {action: forward, to: out}\n"
                 "rules:\n  - name: all\n    action: forward\n    to: out\n    capture: true\n")
FLOWS_PLAIN = FLOWS_CAPTURE.replace("    capture: true\n", "")


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True, help="the sluice binary")
    ap.add_argument("--data", required=True, help="tests/integration/data")
    ap.add_argument("--sluice-capture", required=True, help="the sluice-capture binary")
    a = ap.parse_args()
    a.sluice, a.data, a.sluice_capture = (os.path.abspath(p) for p in (a.sluice, a.data, a.sluice_capture))
    return a


def eal(tag):
    e = eal_args(tag)
    assert e[0] == "-l"
    return [LCORES, *e[2:]]


def cleanup_eal(e):
    """The runtime dir, and hugepage files should a build ever run without --no-huge."""
    remove_runtime_dir(e)
    for a in e:
        if a.startswith("--file-prefix="):
            prefix = a.split("=", 1)[1]
            for f in glob.glob(f"/dev/hugepages/{prefix}map_*") + glob.glob(f"/mnt/huge/{prefix}map_*"):
                try:
                    os.unlink(f)
                except OSError:
                    pass


def sluice_yaml(data, flows, capture=None):
    text = ("ports:\n"
            f"  - name: wan\n    device: \"net_pcap0,rx_pcap={data}/mixed.pcap,infinite_rx=1\"\n"
            "  - name: out\n    device: \"net_null0,no-rx=1\"\n"
            f"workers:\n  lcores: [1]\n  burst: 32\nflows: {flows}\n")
    if capture:
        text += "capture:\n" + "".join(f"  {k}: {v}\n" for k, v in capture.items())
    return text


def popen(args, e, app, log):
    f = open(log, "w")
    try:
        return subprocess.Popen([args.sluice, *e, "--", *app], stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    finally:
        f.close()


def segments(store):
    """{name: (number, size, part)} of the segment files in store."""
    out = {}
    for n in os.listdir(store):
        m = SEG_RE.match(n)
        if m:
            try:
                out[n] = (int(m.group(2)), os.stat(os.path.join(store, n)).st_size, bool(m.group(3)))
            except FileNotFoundError:
                pass  # retention deleted it under us
    return out


def first_chunk_seq(store, number):
    """The seq in the trailer of the first chunk of segment number, once that chunk has landed
    (a segment may be allocated to its full length before anything is written), else None."""
    for name, (n, _, _) in segments(store).items():
        if n != number:
            continue
        try:
            with open(os.path.join(store, name), "rb") as f:
                data = f.read(1 << 20)
            for off, btype, body in pcapng.blocks(data):
                if off == 0 and btype != pcapng.SHB:
                    return None
                if btype == pcapng.TRAILER:
                    return int.from_bytes(body[8:16], "little") if body[:4] == b"SLCK" else None
        except (OSError, ValueError):
            return None  # not there yet, or renamed under us: the next poll sees it
    return None


def verify(args, store):
    """(exit code, parsed --json or None, stderr) of sluice-capture verify."""
    p = subprocess.run([args.sluice_capture, "verify", store, "--json"], capture_output=True, text=True, timeout=60)
    try:
        j = json.loads(p.stdout)
    except ValueError:
        j = None
    return p.returncode, j, p.stderr


def files_in_order(j):
    """verify --json's files as (number, name, file dict), by segment number."""
    out = []
    for f in (j or {}).get("files", []):
        name = os.path.basename(f["path"])
        m = SEG_RE.match(name)
        out.append((int(m.group(2)) if m else -1, name, f))
    return sorted(out, key=lambda t: t[0])


def good_prefix(f):
    """The chunks of the run of good chunks from a file's start, and where that run ends."""
    keep, prefix = 0, []
    for c in sorted(f["chunks"], key=lambda c: c["offset"]):
        if c["state"] != "good" or c["offset"] != keep:
            break
        prefix.append(c)
        keep = c["offset"] + c["length"]
    return prefix, keep


def tshark_count(paths, tmp):
    """tshark -r over the files (concatenated: each chunk is a whole pcapng section, so the
    concatenation of segments is a valid pcapng file). (exit code, packets, stderr)."""
    joined = os.path.join(tmp, "joined.pcapng")
    with open(joined, "wb") as out:
        for p in paths:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out)
    p = subprocess.run(["tshark", "-n", "-r", joined, "-T", "fields", "-e", "frame.number"],
                       capture_output=True, text=True, timeout=60)
    os.unlink(joined)
    return p.returncode, len([ln for ln in p.stdout.splitlines() if ln.strip()]), p.stderr


class Tally:
    """One check per property over all iterations: how often it was checked, what failed."""

    def __init__(self):
        self.props = {}

    def __call__(self, name, ok, detail=""):
        n, fails = self.props.setdefault(name, [0, []])
        self.props[name][0] = n + 1
        if not ok:
            fails.append(detail)
        return ok

    def report(self, prefix):
        for name, (n, fails) in self.props.items():
            check(f"{prefix}{name} ({n - len(fails)}/{n} times)", n > 0 and not fails,
                  "\n      ".join(str(f)[:600] for f in fails[:4]))


# ---------------------------------------------------------------------------------------------
# 3. kill -9 loop


def tamper(kind, store, parts, rng):
    """Damages the newest .part (or one with several chunks) like a power loss would; returns
    what was done, or None."""
    if kind == "none" or not parts:
        return None
    by_num = sorted(parts, key=lambda t: t[0])
    if kind == "torn":
        num, name, f = by_num[-1]
        if f["size"] < 4096:
            return None
        os.truncate(os.path.join(store, name), f["size"] - 1000)
        return f"{name}: cut 1000 bytes off its end (torn last chunk)"
    if kind == "zeros":
        num, name, f = by_num[-1]
        with open(os.path.join(store, name), "ab") as out:
            out.write(bytes(65536))
        return f"{name}: 64 KiB of zeros appended (unwritten tail)"
    if kind == "corrupt":
        several = [t for t in by_num if len(t[2]["chunks"]) >= 2]
        num, name, f = several[-1] if several else by_num[-1]
        chunks = sorted(f["chunks"], key=lambda c: c["offset"])
        c = chunks[len(chunks) // 2]
        off = c["offset"] + min(c["length"] - 64, 300)  # inside the section, before the trailer
        with open(os.path.join(store, name), "r+b") as fh:
            fh.seek(off)
            b = fh.read(1)
            fh.seek(off)
            fh.write(bytes([b[0] ^ 0xFF]))
        return f"{name}: one byte flipped at {off} (chunk {chunks.index(c)} of {len(chunks)} corrupt)"
    return None


def whole_store(t, args, store, windows, label):
    """After a repair: verify exits 0, no .part, no seq twice, seqs contiguous in segment order
    but inside a crash's in-flight window. Returns (highest seq, highest segment number)."""
    rc, j, err = verify(args, store)
    t("verify exits 0 after the repair (every chunk good)", rc == 0 and j is not None and j.get("ok"),
      f"{label}: rc {rc} totals {j and j.get('totals')} {err.strip()[:300]}")
    files = files_in_order(j)
    t("no .part file remains after the repair", not any(f["part"] for _, _, f in files) and
      not any(v[2] for v in segments(store).values()),
      f"{label}: {[n for n, v in segments(store).items() if v[2]]}")
    seqs = []
    for _, _, f in files:
        seqs += [c["seq"] for c in sorted(f["chunks"], key=lambda c: c["offset"]) if c["state"] == "good"]
    dup = len(seqs) - len(set(seqs))
    t("no chunk seq appears twice in the store", dup == 0, f"{label}: {dup} duplicates")
    bad = []
    for a, b in zip(seqs, seqs[1:]):
        if b == a + 1:
            continue
        if b > a and any(lo <= a and b <= hi for lo, hi in windows):
            continue  # chunks in flight at a crash, lost with it
        bad.append((a, b))
    t("seqs contiguous over the store in segment order (gaps only where a crash lost chunks in flight)",
      not bad and seqs, f"{label}: breaks {bad[:5]} (crash windows {windows[-3:]}), {len(seqs)} chunks")
    nums = [n for n, _, _ in files]
    return (max(seqs) if seqs else None), (max(nums) if nums else -1)


def remember(t, history, files, label):
    """Adds the chunks that outlive a repair (every good chunk of a closed segment, the run of
    good chunks from the start of a .part) to history {seq: (segment number, offset)}: a seq
    already there for another chunk is one used twice, even where retention has deleted the
    first since."""
    twice = []
    for n, _, f in files:
        keep = good_prefix(f)[0] if f["part"] else [c for c in f["chunks"] if c["state"] == "good"]
        for c in keep:
            where = (n, c["offset"])
            if history.setdefault(c["seq"], where) != where:
                twice.append((c["seq"], history[c["seq"]], where))
    t("no chunk seq used twice over the whole loop (also where retention deleted the first)", not twice,
      f"{label}: {len(twice)}: (seq, first at (segment, offset), again at) {twice[:3]}")


def check_repaired(t, args, store, exp, log_text, by, tmp):
    """What a repair made of the former .part files (exp, recorded before it). The content is
    read through hard links taken before the repair: they see its cut and outlive retention."""
    paths, epbs = [], 0
    for e in exp:
        final = os.path.join(store, e["final"])
        t("no former .part file remains", not os.path.exists(os.path.join(store, e["name"])),
          f"{by}: {e['name']} is still there")
        if by == "sluice":
            if e["keep"] == 0:
                want = f"capture: repair: {e['name']}: no good chunk in {e['size']} bytes, deleted"
            else:
                want = (f"capture: repair: {e['name']}: kept {e['keep']} bytes of good chunks, cut "
                        f"{e['size'] - e['keep']}, renamed {e['final']}")
            t("sluice's log says what its startup repair did to each .part", want in log_text,
              f"expected '{want}' in the log")
        if e["keep"] == 0:
            t("a .part with no good chunk is deleted", not os.path.exists(final), f"{by}: {e['final']} exists")
            continue
        st = os.stat(e["link"])
        t("each .part is cut right after its run of good chunks from the start", st.st_size == e["keep"],
          f"{by}: {e['name']}: {st.st_size} bytes left, expected {e['keep']} (of {e['size']})")
        if os.path.exists(final):
            t("each .part is renamed to its closed name (same file)", os.stat(final).st_ino == st.st_ino,
              f"{by}: {e['final']} is another file")
        else:
            # Only sluice's own repair runs on: its retention may have deleted the segment since.
            t("each .part is renamed to its closed name (same file)", by == "sluice" and st.st_nlink == 1,
              f"{by}: {e['final']} does not exist")
        try:
            got = [c[2] for c in pcapng.chunks(e["link"])]
            _, pk = pcapng.read_pcapng(e["link"])
        except ValueError as x:
            got, pk = None, []
            t("repaired segments are whole pcapng blocks (pcapng.py)", False, f"{by}: {e['final']}: {x}")
        t("the good chunks of each former .part are all still there (none lost)", got == e["prefix"],
          f"{by}: {e['final']}: seqs {got and got[:3]}..{got and got[-3:]} ({got and len(got)}), "
          f"expected {e['prefix'][:3]}..{e['prefix'][-3:]} ({len(e['prefix'])})")
        paths.append(e["link"])
        epbs += len(pk)
    if paths:
        rc, n, err = tshark_count(paths, tmp)
        t("tshark -r reads the repaired segments, as many packets as pcapng.py counts EPBs",
          rc == 0 and n == epbs and n > 0, f"{by}: tshark rc {rc}, {n} packets, pcapng.py {epbs}; {err.strip()[:300]}")
    for e in exp:
        if os.path.exists(e["link"]):
            os.unlink(e["link"])


def case_kill_loop(args, base):
    print(f"== kill -9 loop: {KILL_ITERATIONS} kills, repaired by turns by sluice-capture repair and "
          "by sluice's startup repair")
    store = os.path.join(base, "store3")
    links = os.path.join(base, "links3")
    os.mkdir(store)
    os.mkdir(links)
    write(base, "flows3.yaml", FLOWS_CAPTURE)
    cfg = write(base, "sluice3.yaml", sluice_yaml(args.data, "flows3.yaml", {
        "lcore": 2, "path": store, "chunk_bytes": "64KiB", "segment_bytes": "1MiB",
        "retain_bytes": "64MiB", "flush_ms": 50, "snaplen": 9216}))
    t = Tally()
    rng = random.Random(os.environ.get("SLUICE_TEST_SEED") or time.time_ns())
    started = time.monotonic()
    expect_seq, max_num = 0, -1   # where the next start must continue; highest segment kept
    windows = []                   # (lo, hi): seqs in flight at a crash, lost ones allowed
    pending = None                 # .part expectations that the next start repairs
    history = {}                   # seq -> (segment number, offset) of every chunk kept
    tampered = []
    kinds = ["none", "torn", "corrupt", "zeros"]
    final_stats = os.path.join(base, "stats3.json")
    for i in range(KILL_ITERATIONS + 1):
        last = i == KILL_ITERATIONS
        e = eal(f"cc3-{i}")
        log = os.path.join(base, f"kill{i}.log")
        app = ["-c", cfg] + (["--duration", "1", "--stats-out", final_stats] if last else [])
        p = popen(args, e, app, log)
        try:
            if last:
                try:
                    rc = p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    rc = p.wait()
            else:
                # Something new reached the store: the first chunk of the first segment numbered
                # past what was there. Read while the run goes on (retention deletes a run's
                # first segments long before the next kill), its seq shows where the run began.
                # The run's first segment is the one its log names ("continuing at segment N").
                deadline, first, number = time.monotonic() + 10, None, None
                while time.monotonic() < deadline and p.poll() is None:
                    if number is None:
                        with open(log) as f:
                            m = re.search(r"continuing at segment (\d+), chunk", f.read())
                        number = int(m.group(1)) if m else None
                    if number is not None:
                        first = first_chunk_seq(store, number)
                        if first is not None:
                            break
                    time.sleep(0.02)
                t("sluice wrote a new chunk within 10 s of each start", first is not None,
                  f"iteration {i}: rc {p.poll()}\n{open(log).read()[-2000:]}")
                t("each run's first chunk (read from the store) carries the last good seq + 1",
                  first == expect_seq, f"iteration {i}: first chunk seq {first}, expected {expect_seq}")
                time.sleep(rng.uniform(0.1, 0.8))
                p.kill()
                rc = p.wait(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            cleanup_eal(e)
        text = open(log).read()
        m = re.search(r"capture: store .* continuing at segment (\d+), chunk (\d+)", text)
        t("each start continues at the last good seq + 1 and after the highest segment number kept",
          m and int(m.group(2)) == expect_seq and int(m.group(1)) > max_num,
          f"iteration {i}: log says {m and m.group(0)[-45:]}, expected chunk {expect_seq}, segment > {max_num}")
        if pending is not None:
            check_repaired(t, args, store, pending, text, "sluice", base)
            pending = None
        if last:
            t("the clean run after the loop exits 0", rc == 0, f"rc {rc}\n{text[-2000:]}")
            ok, why = pool_lines_ok(text, held_at_start=pcap_frames(os.path.join(args.data, "mixed.pcap")))
            t("the clean run after the loop: pool full before start and after stop", ok, why)
            whole_store(t, args, store, windows, "after the clean run")
            rc, j, err = verify(args, store)
            remember(t, history, files_in_order(j), "after the clean run")
            break
        t("killed by SIGKILL", rc == -9, f"iteration {i}: rc {rc}")

        # The crash's state, before any repair.
        rc, j, err = verify(args, store)
        files = files_in_order(j)
        t("closed segments are whole after a kill (every chunk good)",
          j is not None and all(all(c["state"] == "good" for c in f["chunks"]) for _, _, f in files if not f["part"]),
          f"iteration {i}: {[(n, [c['state'] for c in f['chunks'] if c['state'] != 'good']) for n, _, f in files if not f['part']][:3]}")
        parts = [x for x in files if x[2]["part"]]
        kind = kinds[(i // 2) % len(kinds)]
        done = tamper(kind, store, parts, rng)
        if done:
            tampered.append(done)
            rc, j, err = verify(args, store)
            files = files_in_order(j)
            parts = [x for x in files if x[2]["part"]]
        remember(t, history, files, f"iteration {i}")
        lowest_part = min((n for n, _, _ in parts), default=None)
        lo, hi, exp = -1, -1, []
        for n, name, f in files:
            good = [c["seq"] for c in f["chunks"] if c["state"] == "good"]
            hi = max([hi] + good)
            if not f["part"] and (lowest_part is None or n < lowest_part):
                lo = max([lo] + good)
        next_seq = -1
        for n, name, f in files:
            if f["part"]:
                prefix, keep = good_prefix(f)
                link = os.path.join(links, name)
                os.link(os.path.join(store, name), link)
                exp.append({"name": name, "final": name[:-len(".part")], "size": f["size"], "keep": keep,
                            "prefix": [c["seq"] for c in prefix], "link": link})
                next_seq = max([next_seq] + [c["seq"] for c in prefix])
            else:
                next_seq = max([next_seq] + [c["seq"] for c in f["chunks"] if c["state"] == "good"])
        windows.append((lo, hi))
        expect_seq = next_seq + 1
        # A .part with no good chunk is deleted by the repair, so its number may come again.
        max_num = max([max_num] + [n for n, _, f in files if not f["part"] or good_prefix(f)[0]])
        print(f"  kill {i}: {len(files)} segments, {len(parts)} .part "
              f"({', '.join(str(x['size'] - x['keep']) for x in exp)} bytes to cut){'; ' + done if done else ''}; "
              f"repair by {'sluice-capture' if i % 2 == 0 else 'the next start'}", flush=True)
        if i % 2 == 0:
            p = subprocess.run([args.sluice_capture, "repair", store], capture_output=True, text=True, timeout=60)
            t("sluice-capture repair exits 0", p.returncode == 0, f"iteration {i}: rc {p.returncode} {p.stderr[-500:]}")
            check_repaired(t, args, store, exp, p.stdout + p.stderr, "sluice-capture", base)
            top, _ = whole_store(t, args, store, windows, f"iteration {i}")
            t("the highest good seq after the repair is the one recorded before it", top == next_seq,
              f"iteration {i}: {top} vs {next_seq}")
        else:
            pending = exp
    elapsed = time.monotonic() - started
    print(f"  kill loop: {elapsed:.1f} s; damaged on purpose: {len(tampered)}")
    try:
        s = json.load(open(final_stats))
        t("the clean run after the loop records and writes without errors",
          s["capture"]["packets"] > 0 and s["capture"]["write_errors"] == 0, json.dumps(s["capture"]))
    except (OSError, ValueError, KeyError) as x:
        t("the clean run after the loop records and writes without errors", False, str(x))
    t.report("kill -9: ")


# ---------------------------------------------------------------------------------------------
# 5. a full filesystem


def stats_of(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def forwarding_drops(s):
    # capture_full is capture's back-pressure: the packet itself is still forwarded.
    return sum(v for k, v in s["drops"].items() if k != "capture_full")


def baseline_rate(args, base, n):
    """wan packets per second of the same traffic without a capture section, 5 s."""
    write(base, "flows5-plain.yaml", FLOWS_PLAIN)
    cfg0 = write(base, "sluice5-plain.yaml", sluice_yaml(args.data, "flows5-plain.yaml"))
    st0 = os.path.join(base, f"stats5-plain{n}.json")
    rc0, _, err0 = run(args.sluice, eal(f"cc5b{n}"), ["-c", cfg0, "--duration", "5", "--stats-out", st0,
                                                      "--stats-period", "0"], timeout=60)
    s0 = stats_of(st0)
    ok = rc0 == 0 and s0 is not None
    return (s0["ports"]["wan"]["rx_packets"] / s0["uptime_s"] if ok else 0), ok, f"rc {rc0}\n{err0[-1500:]}"


def full_run(args, base, mnt, n):
    """The filesystem filled, sluice started on it for 5 s, the filler removed 1.5 s into the
    run. Returns what the checks need."""
    for f in os.listdir(mnt):
        os.unlink(os.path.join(mnt, f))
    filler = os.path.join(mnt, "filler")
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    vfs = os.statvfs(mnt)
    r = {"free": vfs.f_bavail * vfs.f_frsize, "size_fs": vfs.f_blocks * vfs.f_frsize}
    write(base, "flows5.yaml", FLOWS_CAPTURE)
    cfg = write(base, "sluice5.yaml", sluice_yaml(args.data, "flows5.yaml", {
        "lcore": 2, "path": mnt, "chunk_bytes": "64KiB", "segment_bytes": "512KiB",
        "retain_bytes": "64MiB", "flush_ms": 50, "snaplen": 9216}))
    st = os.path.join(base, f"stats5-{n}.json")
    log = os.path.join(base, f"full5-{n}.log")
    e = eal(f"cc5-{n}")
    p = popen(args, e, ["-c", cfg, "--duration", "5", "--stats-out", st, "--stats-period", "0"], log)
    max_total, seen_closed, removed_ns, t_run = 0, set(), None, None
    try:
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            segs = segments(mnt)
            max_total = max(max_total, sum(v[1] for v in segs.values()))
            seen_closed |= {name for name, v in segs.items() if not v[2]}
            if t_run is None:
                with open(log) as f:
                    if "running for" in f.read():
                        t_run = time.monotonic()
            if removed_ns is None and t_run is not None and time.monotonic() - t_run >= 1.5:
                os.unlink(filler)
                removed_ns = time.time_ns()
            time.sleep(0.05)
    finally:
        if p.poll() is None:
            p.kill()
        r["rc"] = p.wait()
        cleanup_eal(e)
    with open(log) as f:
        r["log"] = f.read()
    r.update(stats=stats_of(st), max_total=max_total, seen_closed=seen_closed, removed_ns=removed_ns)
    return r


def case_full_fs(args, base):
    print("== full filesystem: a 6 MiB tmpfs, full at start, space returns after 1.5 s")
    if os.geteuid() != 0:
        print("SKIPPED: the full-filesystem case needs root to mount a tmpfs (run as root)")
        return
    mnt = os.path.join(base, "tmpfs5")
    os.mkdir(mnt)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", mnt], capture_output=True, text=True)
    if m.returncode != 0:
        print(f"SKIPPED: the full-filesystem case cannot mount a tmpfs: {m.stderr.strip()}")
        return
    try:
        frames = pcap_frames(os.path.join(args.data, "mixed.pcap"))
        rate0, ok0, why0 = baseline_rate(args, base, 0)
        check("full fs: the baseline run without capture exits 0", ok0, why0)
        r = full_run(args, base, mnt, 0)
        check("full fs: the filesystem is full before sluice starts", r["free"] < 65536, f"{r['free']} bytes free")
        text, s, removed_ns, size_fs = r["log"], r["stats"], r["removed_ns"], r["size_fs"]
        if "does not take O_DIRECT" in text:
            print("  (this tmpfs does not take O_DIRECT: sluice writes buffered)")
        check("full fs: sluice exits 0", r["rc"] == 0 and s is not None, f"rc {r['rc']}\n{text[-3000:]}")
        check("full fs: the filler was removed while sluice ran", removed_ns is not None, text[-1500:])
        if s is None or removed_ns is None:
            return
        c, wan, out = s["capture"], s["ports"]["wan"], s["ports"]["out"]
        print(f"  capture: {json.dumps(c)}")
        print(f"  store: at most {r['max_total']} bytes seen, {len(r['seen_closed'])} closed segments seen")
        check("full fs: write errors counted (capture.write_errors > 0)", c["write_errors"] > 0, json.dumps(c))
        check("full fs: the copies of the full period dropped and counted (capture.dropped > 0)",
              c["dropped"] > 0, json.dumps(c))
        failed = [ln for ln in text.splitlines() if "capture: writing" in ln and "failed" in ln]
        check("full fs: 'capture: writing ... failed' logged exactly once (one episode)", len(failed) == 1,
              f"{len(failed)} times:\n      " + "\n      ".join(failed[:6]))
        check("full fs: forwarding lost nothing to capture (drops.tx_full == 0, wan rx_nombuf == 0)",
              s["drops"]["tx_full"] == 0 and wan["rx_nombuf"] == 0,
              f"tx_full {s['drops']['tx_full']} rx_nombuf {wan['rx_nombuf']}")
        fd = forwarding_drops(s)
        check("full fs: out tx_packets == wan rx_packets - drops (capture_full still forwards)",
              out["tx_packets"] == wan["rx_packets"] - fd and wan["rx_packets"] > 0,
              f"tx {out['tx_packets']} rx {wan['rx_packets']} drops {fd}")
        check("full fs: the store never took more than the filesystem", r["max_total"] <= size_fs,
              f"{r['max_total']} > {size_fs}")
        vrc, j, verr = verify(args, mnt)
        files = files_in_order(j)
        nums = [n for n, _, _ in files]
        total = sum(f["size"] for _, _, f in files)
        gone = [n for n in r["seen_closed"] if not os.path.exists(os.path.join(mnt, n))]
        check("full fs: retention deleted the oldest segments once full (first kept number > 0, "
              "closed segments seen during the run gone, more written than the filesystem holds)",
              nums and nums[0] > 0 and gone and c["bytes_written"] > size_fs,
              f"numbers {nums[:3]}.., {len(gone)} gone, {c['bytes_written']} bytes written")
        check("full fs: the store stays within 6 MiB", total <= 6 << 20, f"{total} bytes")
        check("full fs: sluice-capture verify exits 0 (every chunk left is good)", vrc == 0 and j and j["ok"],
              f"rc {vrc} {j and j['totals']} {verr.strip()[:300]}")
        after = [ch for _, _, f in files for ch in f["chunks"] if ch["state"] == "good" and ch["first_ns"] > removed_ns]
        check("full fs: capture resumed (capture.packets > 0, good chunks from after the space returned)",
              c["packets"] > 0 and after, f"packets {c['packets']}, {len(after)} chunks after the filler went")
        ok, why = pool_lines_ok(text, held_at_start=frames)
        check("full fs: pool full before start and after stop", ok, why)

        # The rate: capturing every packet costs the worker its hand-off (a reference and a ring
        # slot per copy), 0.53-0.55x of the rate without capture here, and a worker that waited
        # on the full filesystem would forward next to nothing: the bar is 0.4x. On a shared
        # 2-vCPU VM a neighbour can halve either run, so a pair that misses is measured again
        # (baseline, then the same full-filesystem run), twice at most.
        rates = [(wan["rx_packets"] / s["uptime_s"], rate0)]
        for n in (1, 2):
            if rates[-1][0] >= 0.4 * rates[-1][1]:
                break
            print(f"  rate {rates[-1][0] / 1e6:.2f} Mpps < 0.4x {rates[-1][1] / 1e6:.2f}: measuring the pair again")
            b, okb, _ = baseline_rate(args, base, n)
            rr = full_run(args, base, mnt, n)
            if okb and rr["stats"]:
                rates.append((rr["stats"]["ports"]["wan"]["rx_packets"] / rr["stats"]["uptime_s"], b))
        for rate, base_rate in rates:
            print(f"  forwarding rate: {rate / 1e6:.2f} Mpps with capture on a full filesystem, "
                  f"{base_rate / 1e6:.2f} Mpps without capture ({rate / base_rate if base_rate else 0:.2f}x)")
        check("full fs: forwarding rate at least 0.4x that of the run without capture",
              any(rate >= 0.4 * b for rate, b in rates),
              "; ".join(f"{rate:.0f} vs {b:.0f} packets/s" for rate, b in rates))
    finally:
        if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mnt], capture_output=True)


def main():
    args = parse_args()
    # meson's timeout sends SIGTERM: unwind through the finally blocks (unmount, kill, rm).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", "/var/tmp"], capture_output=True, text=True).stdout.strip()
    print(f"stores under /var/tmp ({fs or 'unknown filesystem'})")
    base = tempfile.mkdtemp(prefix="sluice-it-crash-", dir="/var/tmp")
    try:
        cases = os.environ.get("SLUICE_CRASH_CASES", "3,5").split(",")  # to run one while debugging
        for key, case in (("3", case_kill_loop), ("5", case_full_fs)):
            if key in cases:
                try:
                    case(args, base)
                except Exception:  # noqa: BLE001 - a harness error fails the case, cleanup still runs
                    check(f"{case.__name__} ran to the end", False, traceback.format_exc())
    finally:
        for mp in glob.glob(os.path.join(base, "tmpfs*")):
            if os.path.ismount(mp):
                subprocess.run(["umount", "-l", mp], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    report()


if __name__ == "__main__":
    main()
