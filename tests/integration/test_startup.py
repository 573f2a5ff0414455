#!/usr/bin/env python3
"""Startup errors exit 2 with a message that names the fix; usage errors exit 1."""
import os
import re
import signal
import subprocess
import time

from runner import (FORWARD_ALL, appliance, check, eal_args, parse_args, pool_lines_ok, remove_runtime_dir, report, run,
                    runtime_base, start, tempdir, write)


def main():
    args = parse_args()
    s = args.sluice
    pcap = os.path.join(args.data, "mixed.pcap")

    with tempdir() as d:
        write(d, "flows.yaml", FORWARD_ALL)
        good_ports = [("in", f"net_pcap0,rx_pcap={pcap}"), ("out", "net_null0,no-rx=1")]

        # A vdev whose file does not exist.
        cfg = write(d, "missing-dev.yaml", appliance([("in", "net_pcap0,rx_pcap=/nonexistent/x.pcap"), ("out", "net_null0,no-rx=1")]))
        rc, out, err = run(s, eal_args("st1"), ["-c", cfg])
        check("missing vdev file: exit 2", rc == 2, f"rc={rc}\n{err}")
        check("missing vdev file: names the port, line and fix",
              re.search(r"missing-dev\.yaml:3:\d+: port 'in': cannot attach device", err) and "files must exist" in err, err)

        # A PCI address that is not there.
        cfg = write(d, "missing-pci.yaml", appliance([("in", "0000:99:00.0"), ("out", "net_null0,no-rx=1")]))
        rc, out, err = run(s, eal_args("st2"), ["-c", cfg])
        check("missing PCI device: exit 2", rc == 2, f"rc={rc}\n{err}")
        check("missing PCI device: says how to bind it", "dpdk-devbind.py --bind=vfio-pci 0000:99:00.0" in err, err)

        # A worker lcore outside the EAL set.
        cfg = write(d, "lcore.yaml", appliance(good_ports, lcores="[3]"))
        rc, out, err = run(s, eal_args("st3"), ["-c", cfg])
        check("lcore not in EAL set: exit 2", rc == 2, f"rc={rc}\n{err}")
        check("lcore not in EAL set: names line and the -l fix",
              re.search(r"lcore\.yaml:\d+:\d+: workers\.lcores: lcore 3 is not in the EAL lcore set \(0,1\); add it to EAL's -l", err), err)

        # The main lcore as a worker.
        cfg = write(d, "mainlcore.yaml", appliance(good_ports, lcores="[0]"))
        rc, out, err = run(s, eal_args("st4"), ["-c", cfg])
        check("main lcore as worker: exit 2", rc == 2 and "is the EAL main lcore" in err, f"rc={rc}\n{err}")

        # Too little memory for the pool.
        cfg = write(d, "mem.yaml", appliance(good_ports, extra="mempool:\n  mbufs: 200000\n"))
        rc, out, err = run(s, eal_args("st5", mem=("--no-huge", "-m", "128")), ["-c", cfg])
        check("too little memory: exit 2", rc == 2, f"rc={rc}\n{err}")
        m = re.search(r"needs (\d+) MiB .*give EAL more memory \(-m (\d+)", err)
        check("too little memory: says how many MiB and the -m fix", m and int(m.group(1)) > 128, err)

        # With capture buffers too: the -m the startup error suggests is --check's figure.
        os.makedirs(os.path.join(d, "cap"), exist_ok=True)
        cfg_cap = write(d, "memcap.yaml", appliance(good_ports, extra=f"mempool:\n  mbufs: 200000\ncapture:\n  lcore: 2\n"
                                                                f"  path: {os.path.join(d, 'cap')}\n"))
        rc, out, err = run(s, None, ["--check", "-c", cfg_cap])
        need = re.search(r"EAL needs at least -m (\d+)", out)
        three = ["--lcores", "0@0,1@1,2@0", "--no-huge", "-m", "128", "--no-pci", "--no-shconf",
                 f"--file-prefix=st16-{os.getpid()}", "--log-level=lib.eal:error"]
        rc, out2, err = run(s, three, ["-c", cfg_cap])
        told = re.search(r"give EAL more memory \(-m (\d+)", err)
        check("too little memory with capture: exit 2, suggesting the -m --check prints",
              rc == 2 and need and told and told.group(1) == need.group(1),
              f"rc={rc}; --check: {need.group(0) if need else out}; start: {err[-800:]}")

        # EAL itself refuses.
        rc, out, err = run(s, ["-l", "0,1", "--no-huge", "--definitely-not-an-eal-option"], ["-c", cfg])
        check("bad EAL option: exit 2", rc == 2 and "EAL initialisation failed" in err, f"rc={rc}\n{err}")
        check("bad EAL option: the reason and the option fix, no hugepage advice",
              "EAL initialisation failed: Invalid argument; check the EAL options" in err and "hugepages" not in err, err)

        # A second primary on a running one's --file-prefix: EAL cannot lock its runtime config
        # and leaves no errno; the message names the prefix fix, not "Success" and hugepages.
        shared = ["-l", "0,1", "--no-huge", "-m", "256", "--no-pci", f"--file-prefix=st12-{os.getpid()}",
                  "--log-level=lib.eal:error"]
        cfg_ok = write(d, "ok.yaml", appliance([("in", "net_null0,no-rx=1"), ("out", "net_null1,no-rx=1")]))
        first = start(s, shared, ["-c", cfg_ok, "--duration", "30"])
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not os.path.exists(os.path.join(runtime_base(), f"st12-{os.getpid()}", "config")):
                time.sleep(0.1)
            time.sleep(0.5)  # locked once EAL is past its config
            second = subprocess.run([s, *shared, "--", "-c", cfg_ok, "--duration", "1"], capture_output=True, text=True,
                                    timeout=30, stdin=subprocess.DEVNULL)
        finally:
            first.send_signal(signal.SIGINT)
            first.communicate(timeout=30)
            remove_runtime_dir(shared)
        err = second.stderr
        check("second primary on a running one's --file-prefix: exit 2", second.returncode == 2, f"rc={second.returncode}\n{err}")
        check("... says another primary may hold the prefix, not 'Success' or hugepages",
              "EAL initialisation failed: EAL said why above; if another sluice or DPDK primary process runs with the same "
              "--file-prefix" in err and "Success" not in err and "hugepages" not in err, err)
        check("... and the first one ran on", first.returncode == 0, f"rc={first.returncode}")

        # --stats-out where no file can be written: exit 1 at once, before EAL and the run.
        rc, out, err = run(s, eal_args("st13"), ["-c", cfg_ok, "--duration", "5", "--stats-out", "/nonexistent/x.json"])
        check("--stats-out in a missing folder: exit 1 before EAL starts",
              rc == 1 and "--stats-out: cannot create a file beside /nonexistent/x.json" in err and "EAL" not in err,
              f"rc={rc}\n{err}")
        rc, out, err = run(s, eal_args("st14"), ["-c", cfg_ok, "--duration", "5", "--stats-out", d])
        check("--stats-out naming a folder: exit 1", rc == 1 and "is a directory" in err, f"rc={rc}\n{err}")
        check("... and the probe left nothing there", not [f for f in os.listdir(d) if ".tmp." in f], os.listdir(d))

        # A clean exit on hugepages leaves neither EAL's hugepage files (they would hold their
        # pages until the next start with this prefix) nor its runtime folder.
        mounts = [l.split()[1] for l in open("/proc/mounts") if l.split()[2] == "hugetlbfs"]
        free = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("HugePages_Free")), 0)
        if mounts and free >= 64 and os.geteuid() == 0:
            prefix = f"st15-{os.getpid()}"
            on_huge = ["-l", "0,1", "--socket-mem", "64", "--no-pci", f"--file-prefix={prefix}", "--log-level=lib.eal:error"]
            p = start(s, on_huge, ["-c", cfg_ok, "--duration", "3", "--log-level", "debug"])
            time.sleep(2)
            held = [f for m in mounts for f in os.listdir(m) if f.startswith(f"{prefix}map_")]
            out, err = p.communicate(timeout=60)
            left = [f for m in mounts for f in os.listdir(m) if f.startswith(f"{prefix}map_")]
            check("hugepages run: exit 0, and it held hugepage files while running",
                  p.returncode == 0 and held, f"rc={p.returncode}, {len(held)} files\n{err[-2000:]}")
            check(f"... none left after a clean exit ({len(held)} while running)", not left, f"{len(left)} left: {left[:3]}")
            check("... nor its runtime folder", not os.path.exists(os.path.join(runtime_base(), prefix)), prefix)
            for m in mounts:  # what a failed check left
                for f in os.listdir(m):
                    if f.startswith(f"{prefix}map_"):
                        os.unlink(os.path.join(m, f))
            remove_runtime_dir(on_huge)
        else:
            print("SKIPPED: hugepage files removed at exit: not root, fewer than 64 free 2 MiB hugepages or no "
                  "hugetlbfs mount (tools/test sets both up when run as root)")

        # A duration too large for the clock was "stop at once".
        rc, out, err = run(s, None, ["--duration", "1e20"])
        check("--duration 1e20: exit 1, naming the range", rc == 1 and "--duration: expected a number of seconds 0..1000000000" in err,
              f"rc={rc}\n{err}")

        # Usage errors and --help/--version.
        rc, out, err = run(s, None, ["--no-such-option"])
        check("unknown option: exit 1", rc == 1 and "unknown option" in err, f"rc={rc}\n{err}")
        rc, out, err = run(s, None, ["--duration", "abc"])
        check("bad --duration: exit 1", rc == 1 and "--duration" in err, f"rc={rc}\n{err}")
        rc, out, err = run(s, None, ["--help"])
        check("--help: exit 0 and lists every option",
              rc == 0 and all(o in out for o in ["--config", "--check", "--duration", "--stats-period", "--stats-out", "--log-level", "--version"]), out)
        rc, out, err = run(s, None, ["--version"])
        check("--version: exit 0", rc == 0 and out.startswith("sluice "), out)

        # A missing config file is a config error.
        rc, out, err = run(s, eal_args("st6"), ["-c", os.path.join(d, "nope.yaml")])
        check("missing config: exit 1", rc == 1 and "nope.yaml" in err, f"rc={rc}\n{err}")

        # --simd: a bad name is a usage error; a kernel the CPU lacks or EAL's SIMD bitwidth
        # forbids is a startup error naming the fix; auto respects the bitwidth.
        rc, out, err = run(s, None, ["--help"])
        check("--help: lists --simd and its kernels", "--simd KERNEL" in out and "scalar|avx2|" in out, out)
        cfg = write(d, "simd.yaml", appliance(good_ports))
        rc, out, err = run(s, eal_args("st7"), ["-c", cfg, "--simd", "sse9"])
        check("bad --simd name: exit 1, lists the kernels", rc == 1 and "--simd: expected scalar|avx2|" in err, f"rc={rc}\n{err}")
        rc, out, err = run(s, eal_args("st9") + ["--force-max-simd-bitwidth=512"], ["-c", cfg, "--simd", "avx512"])
        check("--simd avx512: exit 2, says no AVX-512 kernel is built and why, names avx2/auto",
              rc == 2 and "no AVX-512 kernel" in err and "measured slower" in err and "--simd auto" in err,
              f"rc={rc}\n{err}")
        narrow = eal_args("st8") + ["--force-max-simd-bitwidth=128"]
        rc, out, err = run(s, narrow, ["-c", cfg, "--simd", "avx2", "--duration", "0.5"])
        if "avx2" in open("/proc/cpuinfo").read().split():
            check("--simd avx2 beyond EAL's SIMD bitwidth: exit 2 with the EAL fix",
                  rc == 2 and "--force-max-simd-bitwidth=256" in err, f"rc={rc}\n{err}")
        else:
            check("--simd avx2 on a CPU without AVX2: exit 2 naming --simd auto",
                  rc == 2 and "does not support avx2" in err and "--simd auto" in err, f"rc={rc}\n{err}")
        rc, out, err = run(s, narrow, ["-c", cfg, "--duration", "0.5"])
        check("--simd auto within a 128-bit EAL limit: the scalar kernel",
              rc == 0 and "simd: scalar kernel (auto" in err, f"rc={rc}\n{err}")
        ok, why = pool_lines_ok(err)
        check("--simd auto run: pool full before start and after stop", ok, why)

        # Bad input (issue 10): a config or flows file that is a FIFO or a device is a config
        # error (exit 1) at once, before EAL starts; neither blocks the start.
        os.mkfifo(os.path.join(d, "startup.fifo"))
        for path, what in [("/dev/zero", "a character device"), (os.path.join(d, "startup.fifo"), "a FIFO")]:
            rc, out, err = run(s, eal_args("st10"), ["-c", path], timeout=20)
            check(f"start with -c {os.path.basename(path)}: exit 1 at once, saying it is {what}",
                  rc == 1 and f"cannot read {path}: it is {what}" in err and "EAL" not in err, f"rc={rc}\n{err}")
        cfg = write(d, "fifoflows.yaml", appliance(good_ports, flows="startup.fifo"))
        rc, out, err = run(s, eal_args("st11"), ["-c", cfg], timeout=20)
        check("start with a FIFO as the flows file: exit 1 at once, at the flows: line",
              rc == 1 and re.search(r"fifoflows\.yaml:\d+:\d+: flows: cannot read .*startup\.fifo: it is a FIFO", err),
              f"rc={rc}\n{err}")

    report()


if __name__ == "__main__":
    main()
