#!/usr/bin/env python3
"""Startup errors exit 2 with a message that names the fix; usage errors exit 1."""
import os
import re

from runner import FORWARD_ALL, appliance, check, eal_args, parse_args, pool_lines_ok, report, run, tempdir, write


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

        # EAL itself refuses.
        rc, out, err = run(s, ["-l", "0,1", "--no-huge", "--definitely-not-an-eal-option"], ["-c", cfg])
        check("bad EAL option: exit 2", rc == 2 and "EAL initialisation failed" in err, f"rc={rc}\n{err}")

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
