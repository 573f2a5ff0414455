#!/usr/bin/env python3
"""Live reload while traffic flows (issue 4).

stress: data/mixed.pcap replays forever (net_pcap infinite_rx) into sluice; ports a and b are
net_null sinks. 500 reloads alternate between two valid rule sets that send the same packets
to different ports (A: udp -> a, tcp -> b; B: udp -> b, tcp -> a, rules in another order), and
an invalid file of a different kind follows every 5th reload. Most reloads go through the
telemetry command /sluice/reload, some through SIGHUP. Then:
  - reload.ok == 500, reload.failed == the invalid files, last_error names file:line:col;
  - every packet received is accounted exactly once: rx == tx(a) + tx(b) + drops, and each
    port sent exactly what its rule counted (tx(a) == rules.to-a, tx(b) == rules.to-b): a
    burst classified by one generation is counted by that generation;
  - the rules the last reload removed are still listed with their counts;
  - the pool is full at the end.

triggers: the file watcher (inotify) reloads on a rename-replace and an in-place write, a
touch reloads nothing, SIGHUP reloads, and a bad file keeps the running rules.

links: flows.yaml laid out as a Kubernetes ConfigMap volume (flows.yaml -> ..data/flows.yaml,
..data -> a versioned folder): the kubelet's update (a new ..data link renamed over the old
one) reloads, once, and so does a write to the file the links lead to now.

Run with a ThreadSanitizer build of sluice too (tools/test does): any TSan report fails it.
"""
import json
import os
import re
import shutil
import signal
import sys
import time

from runner import Background, check, eal_args, parse_args, pcap_frames, pool_lines_ok, report, tempdir, write
from telemetry import Telemetry

RELOADS = 500
INVALID_EVERY = 5
SIGHUP_EVERY = 50

HEAD = "version: 1\nnon_ip: { action: drop }\ndefault: { action: drop }\nrules:\n"
SET_A = HEAD + """  - name: to-a
    priority: 10
    match: { proto: udp }
    action: forward
    to: a
  - name: to-b
    priority: 10
    match: { proto: tcp }
    action: forward
    to: b
  - name: a-only
    match: { proto: icmp }
    action: drop
"""
SET_B = HEAD + """  - name: b-only
    match: { proto: icmpv6 }
    action: drop
  - name: to-b
    priority: 10
    match: { proto: udp }
    action: forward
    to: b
  - name: to-a
    priority: 10
    match: { proto: tcp }
    action: forward
    to: a
"""
# Each invalid file, and the line its error must name.
INVALID = [
    (HEAD + "  - name: x\n    match: { proto: udp\n    action: drop\n", None),  # YAML syntax
    (HEAD + "  - name: x\n    match: { proto: udp }\n    action: drop\n    colour: red\n", 8),  # unknown key
    (HEAD + "  - name: x\n    action: forward\n    to: nowhere\n", 7),  # unknown port
    (HEAD + "  - name: x\n    action: drop\n  - name: x\n    action: drop\n", 7),  # duplicate name
    (HEAD + "  - name: x\n    match: { dst: 10.0.0.1/8 }\n    action: drop\n", 6),  # host bits
]


def replace(d, name, text):
    """Writes the file as editors do: a temporary file renamed over the original."""
    tmp = os.path.join(d, f".{name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(d, name))


def configmap_update(d, version, text):
    """What the kubelet does to a ConfigMap volume: the keys in a new folder, a new ..data link
    to it renamed over the old one, the old folder removed (none at the first update)."""
    old = os.readlink(os.path.join(d, "..data")) if os.path.islink(os.path.join(d, "..data")) else None
    os.mkdir(os.path.join(d, version))
    write(os.path.join(d, version), "flows.yaml", text)
    os.symlink(version, os.path.join(d, "..data_tmp"))
    os.rename(os.path.join(d, "..data_tmp"), os.path.join(d, "..data"))
    if old:
        shutil.rmtree(os.path.join(d, old))


def setup(d, data, configmap=False):
    pcap = os.path.join(data, "mixed.pcap")
    if configmap:
        configmap_update(d, "..2026_12_07_01_00_00.1", SET_A)
        os.symlink("..data/flows.yaml", os.path.join(d, "flows.yaml"))
    else:
        write(d, "flows.yaml", SET_A)
    return write(d, "sluice.yaml", "ports:\n"
                 f"  - name: in\n    device: \"net_pcap0,rx_pcap={pcap},infinite_rx=1\"\n"
                 "  - name: a\n    device: \"net_null0,no-rx=1\"\n"
                 "  - name: b\n    device: \"net_null1,no-rx=1\"\n"
                 "workers:\n  lcores: [1]\n  burst: 32\nflows: flows.yaml\n")


def launch(binary, data, d, prefix, configmap=False):
    """sluice on the stress ports with SET_A, running (its control loop answers reloads)."""
    cfg = setup(d, data, configmap)
    eal = eal_args(prefix)
    s = Background(binary, eal, ["-c", cfg, "--stats-out", os.path.join(d, "stats.json")])
    if not s.wait_for(r"\] running", 1):
        s.stop()
        raise RuntimeError("sluice did not start:\n" + "".join(s.lines[-20:]))
    return s, eal


def finish(s, tag, d, data):
    """Stops sluice; checks exit 0, no sanitizer report, the pool; returns the stats JSON."""
    rc, log = s.stop()
    check(f"{tag}: exit 0", rc == 0, f"rc={rc}\n{log[-3000:]}")
    check(f"{tag}: no ThreadSanitizer report", "ThreadSanitizer" not in log,
          "\n".join(l for l in log.splitlines() if "ThreadSanitizer" in l or "#" in l[:6])[:4000])
    # net_pcap's infinite_rx holds the whole file in mbufs from queue set-up on.
    ok, why = pool_lines_ok(log, held_at_start=pcap_frames(os.path.join(data, "mixed.pcap")))
    check(f"{tag}: pool full before start and after stop (log)", ok, why)
    try:
        return json.load(open(os.path.join(d, "stats.json")))
    except (OSError, ValueError) as e:
        check(f"{tag}: stats written", False, str(e))
        return None


def check_counters(tag, st, ok, failed, generation):
    """The stats JSON's reload counters (st: finish's answer; None: already failed)."""
    if st is not None:
        rl = st["reload"]
        check(f"{tag}: reload.ok {ok}, failed {failed}, generation {generation}",
              (rl["ok"], rl["failed"], rl["generation"]) == (ok, failed, generation), json.dumps(rl))


def stress(binary, data):
    tag = "stress"
    with tempdir() as d:
        s, eal = launch(binary, data, d, "reload")
        ok_replies = failed_replies = sighups = 0
        problems = []
        t0 = time.monotonic()
        try:
            tel = Telemetry(eal)
            invalid = 0
            for i in range(RELOADS):
                replace(d, "flows.yaml", SET_B if i % 2 == 0 else SET_A)
                if i % SIGHUP_EVERY == SIGHUP_EVERY - 1:
                    sighups += 1
                    s.proc.send_signal(signal.SIGHUP)
                    if not s.wait_for(r"reload \(SIGHUP\): .*generation", sighups):
                        problems.append(f"reload {i + 1} (SIGHUP): no log line")
                        break
                    ok_replies += 1
                else:
                    r = tel.cmd("/sluice/reload")
                    if r is None or r["result"] != "ok" or r["generation"] != i + 2:
                        problems.append(f"reload {i + 1}: {r}")
                        break
                    ok_replies += 1
                if i % INVALID_EVERY == INVALID_EVERY - 1:
                    text, line = INVALID[invalid % len(INVALID)]
                    invalid += 1
                    replace(d, "flows.yaml", text)
                    r = tel.cmd("/sluice/reload")
                    where = r"flows\.yaml:%s:\d+: " % (line if line else r"\d+")
                    if r is None or r["result"] != "failed" or r["generation"] != i + 2 or not re.search(where, r["error"]):
                        problems.append(f"invalid file {invalid} (after reload {i + 1}): {r}")
                        break
                    failed_replies += 1
            reload_s = time.monotonic() - t0
            time.sleep(0.5)  # traffic on the final generation
            tel.close()
        except Exception as e:  # noqa: BLE001
            problems.append(f"{type(e).__name__}: {e}")
            reload_s = time.monotonic() - t0
        st = finish(s, tag, d, data)
        check(f"{tag}: {RELOADS} reloads answered ok, {RELOADS // INVALID_EVERY} invalid files answered failed "
              f"({reload_s:.1f} s)", not problems and ok_replies == RELOADS and failed_replies == RELOADS // INVALID_EVERY,
              "; ".join(problems) + "\n" + "".join(s.lines[-30:]))
        if st is None:
            return
        rl = st["reload"]
        check(f"{tag}: reload.ok == {RELOADS}", rl["ok"] == RELOADS, json.dumps(rl))
        check(f"{tag}: reload.failed == {RELOADS // INVALID_EVERY}", rl["failed"] == RELOADS // INVALID_EVERY, json.dumps(rl))
        check(f"{tag}: reload.generation == {RELOADS + 1}", rl["generation"] == RELOADS + 1, json.dumps(rl))
        last_line = INVALID[(RELOADS // INVALID_EVERY - 1) % len(INVALID)][1]
        check(f"{tag}: reload.last_error names flows.yaml:{last_line}:col", re.search(r"flows\.yaml:%d:\d+: " % last_line, rl["last_error"]),
              rl["last_error"])
        rx = st["ports"]["in"]["rx_packets"]
        tx_a, tx_b = st["ports"]["a"]["tx_packets"], st["ports"]["b"]["tx_packets"]
        drops = sum(st["drops"].values())
        rules = st["rules"]
        check(f"{tag}: traffic flowed during the reloads ({rx} packets, {rx / max(reload_s + 0.5, 0.1) / 1e6:.2f} Mpps)",
              rx > 10000, json.dumps(st["ports"]))
        check(f"{tag}: every packet received accounted once: rx {rx} == tx a {tx_a} + tx b {tx_b} + drops {drops}",
              rx == tx_a + tx_b + drops, json.dumps(st["drops"]))
        check(f"{tag}: port a sent exactly what rule to-a counted ({tx_a})", rules.get("to-a", {}).get("packets") == tx_a,
              json.dumps(rules))
        check(f"{tag}: port b sent exactly what rule to-b counted ({tx_b})", rules.get("to-b", {}).get("packets") == tx_b,
              json.dumps(rules))
        check(f"{tag}: both ports got traffic under both generations' verdicts", tx_a > 0 and tx_b > 0, json.dumps(st["ports"]))
        want = ["to-a", "to-b", "a-only", "b-only"]  # set A's rules, then b-only, removed by the last reload
        check(f"{tag}: rules lists the current rules then the one the last reload removed: {want}", list(rules) == want,
              json.dumps(rules))
        policy = st["drops"]["rule"] + st["drops"]["non_ip"] + st["drops"]["default"]
        check(f"{tag}: rule drops == a-only + b-only counts", st["drops"]["rule"] == rules["a-only"]["packets"] + rules["b-only"]["packets"],
              f"{st['drops']} {rules}")
        check(f"{tag}: policy drops counted ({policy})", policy > 0, json.dumps(st["drops"]))
        check(f"{tag}: mempool.available == mempool.total", st["mempool"]["available"] == st["mempool"]["total"] > 0,
              json.dumps(st["mempool"]))
        check(f"{tag}: a one-line diff logged for each of the {RELOADS} reloads",
              s.count(r"reload \((telemetry|SIGHUP|file change)\): .*generation \d+ \(3 rules\): 1 added, 1 removed, 2 changed "
                      r"\(added: (a|b)-only; removed: (a|b)-only; changed: to-., to-.; order") == RELOADS,
              "".join(l for l in s.lines if "reload (" in l and "1 added, 1 removed" not in l)[:3000])

def triggers(binary, data):
    tag = "triggers"
    with tempdir() as d:
        s, eal = launch(binary, data, d, "reload-trig")
        try:
            replace(d, "flows.yaml", SET_B)  # an editor's rename-replace
            check(f"{tag}: rename-replace reloads (file change)",
                  s.wait_for(r"reload \(file change\): .*generation 2 .*1 added, 1 removed, 2 changed", 1, 20), s.lines[-5:])
            with open(os.path.join(d, "flows.yaml"), "w") as f:  # in place
                f.write(SET_A)
            check(f"{tag}: in-place write reloads (file change)", s.wait_for(r"reload \(file change\): .*generation 3 ", 1, 20),
                  s.lines[-5:])
            os.utime(os.path.join(d, "flows.yaml"))
            with open(os.path.join(d, "flows.yaml"), "a"):
                pass  # open and close for writing, no new bytes
            time.sleep(1)
            check(f"{tag}: a write of the same bytes reloads nothing", s.count(r"generation 4") == 0, s.lines[-5:])
            s.proc.send_signal(signal.SIGHUP)
            check(f"{tag}: SIGHUP on the bytes the watcher applied: reported, not reloaded twice",
                  s.wait_for(r"reload \(SIGHUP\): .* is what generation 3 already runs", 1, 20), s.lines[-5:])
            replace(d, "flows.yaml", SET_B)
            s.proc.send_signal(signal.SIGHUP)  # within the watcher's debounce: one reload
            check(f"{tag}: SIGHUP right after a save reloads once",
                  s.wait_for(r"reload \((SIGHUP|file change)\): .*generation 4 .*1 added, 1 removed", 1, 20), s.lines[-5:])
            time.sleep(0.5)
            check(f"{tag}: ... and the watcher does not reload it again", s.count(r"generation 5") == 0, s.lines[-5:])
            replace(d, "flows.yaml", INVALID[2][0])
            check(f"{tag}: a bad file is rejected and the rules keep running",
                  s.wait_for(r"reload \(file change\) rejected, rules generation 4 keeps running: .*flows\.yaml:7:\d+: .*unknown port", 1, 20),
                  s.lines[-5:])
            time.sleep(0.7)  # telemetry serves the snapshot the control loop publishes every 0.5 s
            tel = Telemetry(eal)
            st, rules = tel.cmd("/sluice/stats"), tel.cmd("/sluice/rules")
            tel.close()
            check(f"{tag}: telemetry /sluice/stats has the reload counters",
                  (st["reload/ok"], st["reload/failed"], st["reload/generation"]) == (3, 1, 4) and
                  "unknown port" in st["reload/last_error"], json.dumps(st))
            check(f"{tag}: telemetry /sluice/rules names rules with '-' (as '_')", {"to_a", "to_b", "b_only", "a_only"} <= set(rules),
                  json.dumps(rules))
            s.proc.send_signal(signal.SIGHUP)  # the rejected bytes again: the same error, not "already runs"
            check(f"{tag}: SIGHUP on the bytes the watcher rejected: the same error, reported as rejected",
                  s.wait_for(r"reload \(SIGHUP\) rejected, rules generation 4 keeps running: .*flows\.yaml:7:\d+: .*unknown port.*"
                             r"unchanged since its file change was rejected", 1, 20) and
                  s.count(r"is what generation 4 already runs") == 0, s.lines[-5:])
        finally:
            st = finish(s, tag, d, data)
        check_counters(tag, st, 3, 1, 4)


def links(binary, data):
    tag = "links"
    with tempdir() as d:
        s, _ = launch(binary, data, d, "reload-links", configmap=True)
        try:
            configmap_update(d, "..2026_12_07_02_00_00.2", SET_B)
            check(f"{tag}: a ConfigMap update (..data renamed over) reloads (file change)",
                  s.wait_for(r"reload \(file change\): .*generation 2 .*1 added, 1 removed, 2 changed", 1, 20), s.lines[-5:])
            with open(os.path.join(d, "..2026_12_07_02_00_00.2", "flows.yaml"), "w") as f:
                f.write(SET_A)  # the file the links lead to now, in place
            check(f"{tag}: a write to the linked file reloads (file change)",
                  s.wait_for(r"reload \(file change\): .*generation 3 ", 1, 20), s.lines[-5:])
            time.sleep(0.5)
            check(f"{tag}: ... each once", s.count(r"generation 4") == 0 and s.count(r"reload \(") == 2,
                  "".join(l for l in s.lines if "reload (" in l))
        finally:
            st = finish(s, tag, d, data)
        check_counters(tag, st, 2, 0, 3)


def main():
    args = parse_args()
    stress(args.sluice, args.data)
    triggers(args.sluice, args.data)
    links(args.sluice, args.data)
    report()


if __name__ == "__main__":
    sys.exit(main())
