#!/usr/bin/env python3
"""The first data path end to end: mixed.pcap through sluice on net_pcap ports.

wan replays data/mixed.pcap (valid traffic of every kind and at least two packets of every
validation drop reason); lan, dmz and tap write what sluice sends them. The output pcap of
each port must hold exactly the expected frames in order, byte for byte, and the statistics
JSON must count every reason, rule, `default` and `non_ip` exactly as gen_mixed.py labels
the packets. The pool must be full before start and after stop.
"""
import json
import os
import subprocess
import sys
import tempfile

from packets import read_pcap
from runner import check, eal_args, parse_args, pool_lines_ok, report, run, tempdir, write

OUT_PORTS = ["lan", "dmz", "tap"]
REASONS = ["runt", "l3_truncated", "ipv4_version", "ipv4_ihl", "ipv4_length", "ipv4_checksum",
           "ipv6_version", "ipv6_length", "ipv6_ext", "l4_truncated", "tcp_offset", "udp_length"]
POLICY = ["non_ip", "rule", "default", "tx_full", "ring_full", "capture_full"]


def data_is_current(data):
    """The committed pcap and manifest are what gen_mixed.py writes today."""
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, os.path.join(here, "gen_mixed.py"), d], check=True,
                       capture_output=True)
        for name in ["mixed.pcap", "mixed.expect.json"]:
            with open(os.path.join(d, name), "rb") as a, open(os.path.join(data, name), "rb") as b:
                if a.read() != b.read():
                    return False, f"{name} differs from gen_mixed.py's output; rerun it and commit"
    return True, ""


def expectations(manifest, frames):
    out = {p: [] for p in OUT_PORTS}
    drops = {r: 0 for r in REASONS + POLICY}
    rules, default, non_ip = {}, {"packets": 0, "bytes": 0}, {"packets": 0, "bytes": 0}
    for e in manifest:
        frame = frames[e["n"]]
        if "drop" in e:
            drops[e["drop"]] += 1
            continue
        for p in e["out"]:
            out[p].append(frame)
        target = {"default": default, "non_ip": non_ip}.get(e["rule"])
        if target is None:
            target = rules.setdefault(e["rule"], {"packets": 0, "bytes": 0})
        target["packets"] += 1
        target["bytes"] += len(frame)
        if e.get("dropped"):
            drops["rule"] += 1
    return out, drops, rules, default, non_ip


def free_hugepages():
    if "hugetlbfs" not in open("/proc/mounts").read():
        return 0
    for line in open("/proc/meminfo"):
        if line.startswith("HugePages_Free"):
            return int(line.split()[1])
    return 0


def run_once(sluice, data, tag, mem=("--no-huge", "-m", "512"), simd=None):
    pcap = os.path.join(data, "mixed.pcap")
    manifest = json.load(open(os.path.join(data, "mixed.expect.json")))
    frames = read_pcap(pcap)
    check(f"{tag}: manifest covers every packet", len(frames) == len(manifest), f"{len(frames)} vs {len(manifest)}")
    want_out, want_drops, want_rules, want_default, want_non_ip = expectations(manifest, frames)
    with tempdir() as d:
        ports = "\n".join([
            "ports:",
            f"  - name: wan\n    device: \"net_pcap0,rx_pcap={pcap}\"",
            *[f"  - name: {p}\n    device: \"net_pcap{i + 1},tx_pcap={d}/{p}.pcap\"" for i, p in enumerate(OUT_PORTS)],
        ])
        cfg = write(d, "sluice.yaml", f"{ports}\nworkers:\n  lcores: [1]\n  burst: 32\n"
                                      f"flows: {os.path.join(data, 'flows.yaml')}\n")
        stats_path = os.path.join(d, "stats.json")
        app = ["-c", cfg, "--duration", "2", "--stats-out", stats_path] + (["--simd", simd] if simd else [])
        rc, out, err = run(sluice, eal_args(tag, mem=mem), app)
        check(f"{tag}: exit 0", rc == 0, f"rc={rc}\n{err}")
        ok, why = pool_lines_ok(err)
        check(f"{tag}: pool full before start and after stop", ok, why + "\n" + err[-3000:])
        for p in OUT_PORTS:
            try:
                got = read_pcap(os.path.join(d, f"{p}.pcap"))
            except (OSError, ValueError) as e:
                check(f"{tag}: {p}.pcap readable", False, str(e))
                continue
            same = got == want_out[p]
            detail = ""
            if not same:
                detail = f"got {len(got)} frames, want {len(want_out[p])}"
                for i, (a, b) in enumerate(zip(got, want_out[p])):
                    if a != b:
                        detail += f"; first difference at frame {i}: got {a[:40].hex()} want {b[:40].hex()}"
                        break
            check(f"{tag}: {p}.pcap holds exactly the {len(want_out[p])} expected frames in order", same, detail)
        try:
            s = json.load(open(stats_path))
        except (OSError, ValueError) as e:
            check(f"{tag}: stats JSON written", False, str(e))
            return
        if simd:
            check(f"{tag}: stats say simd {simd}", s.get("simd") == simd, f"got {s.get('simd')}")
        check(f"{tag}: every drop reason key present", sorted(s["drops"]) == sorted(REASONS + POLICY), str(sorted(s["drops"])))
        for r in REASONS + POLICY:
            check(f"{tag}: drops.{r} == {want_drops[r]}", s["drops"].get(r) == want_drops[r], f"got {s['drops'].get(r)}")
        rule_names = [r for r in s["rules"]]
        for name, got in s["rules"].items():
            want = want_rules.get(name, {"packets": 0, "bytes": 0})
            check(f"{tag}: rules.{name} == {want}", got == want, f"got {got}")
        missing = set(want_rules) - set(rule_names)
        check(f"{tag}: every expected rule is in the stats", not missing, str(missing))
        check(f"{tag}: default == {want_default}", s["default"] == want_default, f"got {s['default']}")
        check(f"{tag}: non_ip == {want_non_ip}", s["non_ip"] == want_non_ip, f"got {s['non_ip']}")
        check(f"{tag}: wan rx_packets == {len(frames)}", s["ports"]["wan"]["rx_packets"] == len(frames), json.dumps(s["ports"]["wan"]))
        for p in OUT_PORTS:
            want = len(want_out[p])
            check(f"{tag}: {p} tx_packets == {want}", s["ports"][p]["tx_packets"] == want, json.dumps(s["ports"][p]))
        check(f"{tag}: mempool.available == mempool.total", s["mempool"]["available"] == s["mempool"]["total"] > 0,
              json.dumps(s["mempool"]))


def main():
    args = parse_args()
    ok, why = data_is_current(args.data)
    check("committed mixed.pcap and mixed.expect.json match gen_mixed.py", ok, why)
    run_once(args.sluice, args.data, "fwd")
    # The same with each validation kernel chosen explicitly: identical outputs and counters.
    for kernel in ["scalar", "avx2"]:
        if kernel != "scalar" and kernel not in open("/proc/cpuinfo").read().split():
            print(f"SKIPPED: forwarding with --simd {kernel}: this CPU lacks {kernel}")
            continue
        run_once(args.sluice, args.data, f"fwd-{kernel}", simd=kernel)
    # The same on hugepages, where there are some (CI reserves them).
    if free_hugepages() >= 128:
        run_once(args.sluice, args.data, "fwd-hugepages", mem=("--socket-mem", "256", "--huge-unlink"))
    else:
        print("SKIPPED: forwarding on hugepages: fewer than 128 free 2 MiB hugepages "
              "or no hugetlbfs mount (tools/test sets both up when run as root)")
    report()


if __name__ == "__main__":
    main()
