#!/usr/bin/env python3
"""sluice --check: exit 0 with a summary for valid configs, exit 1 with file:line:col for bad
ones; no EAL, no hugepages, no devices, no root."""
import os
import re
import shutil
import subprocess
import time

from runner import check, parse_args, report, run, tempdir, write


def main():
    args = parse_args()
    s = args.sluice
    repo = os.path.abspath(os.path.join(args.data, "..", "..", ".."))

    for cfg in ["config/sluice.yaml", "config/demo/sluice.yaml"]:
        rc, out, err = run(s, None, ["--check", "-c", os.path.join(repo, cfg)])
        check(f"--check {cfg}: exit 0", rc == 0, f"rc={rc}\n{out}\n{err}")
        check(f"--check {cfg}: summary names ports, lcores, rules per family and memory",
              "config OK" in out and "ports (" in out and "lcores:" in out and "IPv4 table" in out and "MiB" in out, out)

    with tempdir() as d:
        write(d, "flows.yaml", "version: 1\nrules:\n  - name: a\n    match: { proto: tcp, dst: 10.0.0.0/8 }\n    action: drop\n"
                               "  - name: b\n    match: { dst: \"2001:db8::/32\" }\n    action: drop\n"
                               "  - name: c\n    match: { proto: udp }\n    action: drop\n")
        good = write(d, "good.yaml", "ports:\n  - name: wan\n    device: \"0000:3b:00.0\"\n"
                                     "  - name: lan\n    device: \"0000:3b:00.1\"\nworkers:\n  lcores: [1, 2]\nflows: flows.yaml\n")
        rc, out, err = run(s, None, ["--check", "-c", good])
        check("--check with PCI devices that are not here: exit 0 (no devices touched)", rc == 0, f"rc={rc}\n{err}")
        check("--check: rules per family (1 v4, 1 v6, 1 both)",
              re.search(r"3 rules \(IPv4 only 1, IPv6 only 1, both families 1", out), out)
        m = re.search(r"memory: (\d+) MiB", out)
        check("--check: prints the memory needed", m and int(m.group(1)) > 0, out)

        if os.geteuid() == 0 and shutil.which("setpriv"):
            os.chmod(d, 0o755)
            for f in os.listdir(d):
                os.chmod(os.path.join(d, f), 0o644)
            p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", s, "--check", "-c", good],
                               capture_output=True, text=True, stdin=subprocess.DEVNULL)
            check("--check as user nobody: exit 0", p.returncode == 0, f"rc={p.returncode}\n{p.stderr}")
        else:
            print("SKIPPED: --check as an unprivileged user (needs root to switch user)")

        bad = write(d, "bad.yaml", "ports:\n  - name: wan\n    device: \"0000:3b:00.0\"\n    rx_descriptors: lots\n"
                                   "workers:\n  lcores: [1]\nflows: flows.yaml\n")
        rc, out, err = run(s, None, ["--check", "-c", bad])
        check("--check bad type: exit 1", rc == 1, f"rc={rc}\n{out}\n{err}")
        check("--check bad type: names file:line:col", re.search(r"bad\.yaml:4:\d+:", err), err)

        write(d, "badflows.yaml", "version: 1\nrules:\n  - name: x\n    match: { dst: 10.0.0.0/33 }\n    action: drop\n")
        badf = write(d, "badf.yaml", "ports:\n  - name: wan\n    device: net_null0\nworkers:\n  lcores: [1]\nflows: badflows.yaml\n")
        rc, out, err = run(s, None, ["--check", "-c", badf])
        check("--check bad CIDR in the flows file: exit 1 naming badflows.yaml:4", rc == 1 and re.search(r"badflows\.yaml:4:\d+:", err),
              f"rc={rc}\n{err}")

        def cap_config(lcore, path, extra=""):
            return write(d, "cap.yaml", "ports:\n  - name: wan\n    device: net_null0\nworkers:\n  lcores: [1]\n"
                         f"flows: flows.yaml\ncapture:\n  lcore: {lcore}\n  path: {path}\n{extra}")

        cap = cap_config(2, "/tmp")
        rc, out, err = run(s, None, ["--check", "-c", cap])
        check("--check capture section: exit 0, prints the store's layout and memory",
              rc == 0 and "capture: lcore 2" in out and "store /tmp: writable" in out and "segments of 1073741824 bytes" in out
              and "34 chunk buffers" in out and "capture rings 4160" in out, f"rc={rc}\n{out}\n{err}")
        cap = cap_config(1, "/tmp")
        rc, out, err = run(s, None, ["--check", "-c", cap])
        check("--check capture lcore that is a worker: exit 1 at its line", rc == 1 and "cap.yaml:8:10: capture.lcore: lcore 1 is also a worker lcore (line 5)" in err,
              f"rc={rc}\n{err}")
        cap = cap_config(2, "/nonexistent/store")
        rc, out, err = run(s, None, ["--check", "-c", cap])
        check("--check missing capture path: exit 0 but says sluice will not start and how to fix it",
              rc == 0 and "MISSING" in out and "mkdir -p /nonexistent/store" in out, f"rc={rc}\n{out}\n{err}")
        # A char device: --check tries it as an NVMe namespace (passthrough) and says why not.
        cap = cap_config(2, "/dev/null")
        rc, out, err = run(s, None, ["--check", "-c", cap])
        check("--check capture path /dev/null: not usable, not an NVMe device, sluice will not start",
              rc == 0 and "store /dev/null: NOT USABLE: /dev/null is not an NVMe device" in out and "sluice will not start" in out,
              f"rc={rc}\n{out}\n{err}")
        cap = cap_config(2, "/tmp", "  backend: passthru\n")
        rc, out, err = run(s, None, ["--check", "-c", cap])
        check("--check backend passthru on a directory: not usable, names the generic char device",
              rc == 0 and "NOT USABLE" in out and "is a directory, not an NVMe device" in out, f"rc={rc}\n{out}\n{err}")

        # distribute (issue 11): --check says how each port reaches the workers; a device
        # without RSS given distribute: rss is a startup error naming the fix.
        dist = write(d, "dist.yaml", "ports:\n  - name: wan\n    device: \"net_memif0,role=server,socket=/tmp/x.sock\"\n"
                                     "  - name: lan\n    device: net_null0\n  - name: tap\n    device: net_null1\n"
                                     "    distribute: ring\nworkers:\n  lcores: [1, 2]\nflows: flows.yaml\n")
        rc, out, err = run(s, None, ["--check", "-c", dist])
        check("--check explains distribute per port (auto ring for memif, auto rss for net_null, ring as said)",
              rc == 0 and "distribute: ring: one RX queue spread over 2 workers (auto: net_memif has no RSS)" in out
              and "distribute: rss over 2 queues, symmetric key (auto: net_null has RSS)" in out
              and re.search(r"2 tap .*rx_queues 1,.*\n      distribute: ring: one RX queue spread over 2 workers\n", out)
              and "hand-off rings 8192" in out, f"rc={rc}\n{out}\n{err}")
        write(d, "fwd.yaml", "version: 1\ndefault: { action: drop }\n")
        norss = write(d, "norss.yaml", "ports:\n  - name: wan\n    device: \"net_ring0\"\n    distribute: rss\n"
                                       "workers:\n  lcores: [1, 2]\nflows: fwd.yaml\n")
        rc, out, err = run(s, ["--lcores", "0@0,1@0,2@0", "--vdev", "net_ring0", "--no-huge", "-m", "256", "--no-pci", "--no-shconf",
                               f"--file-prefix=dist-{os.getpid()}", "--log-level=lib.eal:error"], ["-c", norss])
        check("distribute: rss on a device without RSS: exit 2 naming the line and the fix",
              rc == 2 and "norss.yaml:4:17: port 'wan': distribute: rss, but net_ring has no RSS; say distribute: ring"
              in err, f"rc={rc}\n{err[-600:]}")

        pcap = os.path.join(d, "in.pcap")
        with open(pcap, "wb") as f:  # an empty classic pcap
            f.write(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
        fewtx = write(d, "fewtx.yaml", f"ports:\n  - name: wan\n    device: \"net_pcap0,rx_pcap={pcap},tx_pcap=/dev/null\"\n"
                                       "workers:\n  lcores: [1, 2]\nflows: fwd.yaml\n")
        rc, out, err = run(s, ["--lcores", "0@0,1@0,2@0", "--no-huge", "-m", "256", "--no-pci", "--no-shconf",
                               f"--file-prefix=dist-{os.getpid()}", "--log-level=lib.eal:error"], ["-c", fewtx])
        check("a port with fewer TX queues than workers: exit 2 naming the port and how to give it more",
              rc == 2 and "port 'wan' (net_pcap) has 1 TX queue but every worker sends on a queue of its own (2 workers)"
              in err and "one tx_pcap or tx_iface per worker" in err, f"rc={rc}\n{err[-600:]}")

        rc, out, err = run(s, None, ["--check", "-c", os.path.join(d, "absent.yaml")])
        check("--check missing file: exit 1", rc == 1 and "absent.yaml" in err, f"rc={rc}\n{err}")

        # --diff OLD: a dry run of a reload, against the config's flows file.
        write(d, "old.yaml", "version: 1\nrules:\n  - name: a\n    match: { proto: udp, dst: 10.0.0.0/8 }\n    action: drop\n"
                             "  - name: gone\n    action: drop\n")
        rc, out, err = run(s, None, ["--check", "-c", good, "--diff", os.path.join(d, "old.yaml")])
        check("--check --diff: exit 0", rc == 0, f"rc={rc}\n{err}")
        check("--check --diff: counts and one line per change",
              "2 added, 1 removed, 1 changed" in out and "\n+ b\n+ c\n- gone\n~ a: proto udp -> tcp\n" in out, out)
        write(d, "badold.yaml", "version: 1\nrules:\n  - name: a\n    action: forward\n    to: nowhere\n")
        rc, out, err = run(s, None, ["--check", "-c", good, "--diff", os.path.join(d, "badold.yaml")])
        check("--check --diff with a bad OLD: exit 1 naming badold.yaml:5", rc == 1 and re.search(r"badold\.yaml:5:\d+:", err),
              f"rc={rc}\n{err}")
        rc, out, err = run(s, None, ["-c", good, "--diff", os.path.join(d, "old.yaml")])
        check("--diff without --check: usage error, exit 1", rc == 1 and "--check" in err, f"rc={rc}\n{err}")

        # Bad input (issue 10): what is not a regular file, or is too big, is refused at once,
        # naming the file and what it is; a non-YAML file is quoted one line at most.
        def check_at_once(argv, timeout=10):
            t0 = time.monotonic()
            try:
                rc, out, err = run(s, None, argv, timeout=timeout)
            except subprocess.TimeoutExpired:
                return None, "", f"still running after {timeout} s (hung)", timeout
            return rc, out, err, time.monotonic() - t0

        fifo = os.path.join(d, "sluice.fifo")
        os.mkfifo(fifo)
        os.mkdir(os.path.join(d, "a-dir"))
        sparse = os.path.join(d, "sparse.yaml")
        with open(sparse, "wb") as f:
            f.truncate(2 << 30)
        for path, what in [("/dev/zero", "it is a character device"), (fifo, "it is a FIFO (named pipe)"),
                           (os.path.join(d, "a-dir"), "it is a directory"),
                           (sparse, "it is 2.0 GiB, more than the 1.0 MiB an appliance config may be")]:
            rc, out, err, took = check_at_once(["--check", "-c", path])
            check(f"--check -c {os.path.basename(path)}: exit 1 at once, naming the file and what it is",
                  rc == 1 and f"cannot read {path}: {what}" in err and took < 5, f"rc={rc} {took:.1f} s\n{err}")
        write(d, "fifo-flows.yaml", "ports:\n  - name: wan\n    device: net_null0\nworkers:\n  lcores: [1]\nflows: flows.fifo\n")
        os.mkfifo(os.path.join(d, "flows.fifo"))
        rc, out, err, took = check_at_once(["--check", "-c", os.path.join(d, "fifo-flows.yaml")])
        check("--check with a FIFO as the flows file: exit 1 at once, at the flows: line",
              rc == 1 and re.search(r"fifo-flows\.yaml:6:8: flows: cannot read .*flows\.fifo: it is a FIFO", err),
              f"rc={rc}\n{err}")
        with open(os.path.join(d, "binary.yaml"), "wb") as f:
            f.write(bytes(range(1, 256)) * 40)
        with open(os.path.join(d, "oneline.yaml"), "w") as f:
            f.write("x" * 100000 + "\n")
        for name in ["binary.yaml", "oneline.yaml"]:
            rc, out, err, took = check_at_once(["--check", "-c", os.path.join(d, name)])
            msg = [l for l in err.splitlines() if name in l]
            check(f"--check {name}: exit 1, one error line under 400 characters, no raw bytes",
                  rc == 1 and len(err.splitlines()) == 1 and len(err) < 400 and all(c.isprintable() for c in err.rstrip("\n")) and msg, f"rc={rc} {len(err)} chars\n{err[:2000]!r}")
        rc, out, err, took = check_at_once(["--check", "-c", os.path.join(d, "oneline.yaml")])
        check("--check on a long one-line file: quotes 120 characters and '...'", "'" + "x" * 120 + "...'" in err, err[:500])
    report()


if __name__ == "__main__":
    main()
