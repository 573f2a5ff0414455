#!/usr/bin/env python3
"""sluice --doctor: the host checked against the config, each check OK/WARN/FAIL with its fix,
exit 1 only on a FAIL, --json that parses (issue 10, acceptance 1).

The host is a fake /sys and /proc tree (SLUICE_HOST_ROOT, read only by lib/sys/host), so every
case (hugepages present and absent, an unisolated worker lcore, a NIC on the wrong driver or
NUMA node, ...) is the same on any CI machine; one run against the real host checks that the
doctor works there too, without root and without hugepages."""
import json
import os
import re
import shutil
import subprocess

from runner import check, parse_args, report, tempdir, write

FLOWS = "version: 1\nnon_ip: { action: drop }\ndefault: { action: drop }\nrules: []\n"


def make_host(root, cpus="0-3", nodes=None, hugepages=512, free=None, mounted=True, isolated="1-2",
              nohz="1-2", cmdline_extra="isolcpus=1-2 nohz_full=1-2 rcu_nocbs=1-2",
              governors=None, pci=None, iommu_groups=(12, 13), noiommu=False, capeff="000001ffffffffff"):
    """A fake host under root: nodes maps node -> cpulist; pci maps address -> (node, driver or
    None, netdev or None); governors maps cpu -> governor."""
    shutil.rmtree(root, ignore_errors=True)
    nodes = nodes if nodes is not None else {0: cpus}
    free = hugepages if free is None else free

    def put(path, text):
        full = os.path.join(root, path.lstrip("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)

    put("/sys/devices/system/cpu/online", cpus + "\n")
    put("/sys/devices/system/cpu/isolated", isolated + "\n")
    put("/sys/devices/system/cpu/nohz_full", (nohz or "(null)") + "\n")
    put("/proc/cmdline", "BOOT_IMAGE=/vmlinuz-6.1.0 root=/dev/vda1 ro " + cmdline_extra + "\n")
    for node, cpulist in nodes.items():
        put(f"/sys/devices/system/node/node{node}/cpulist", cpulist + "\n")
        base = f"/sys/devices/system/node/node{node}/hugepages/hugepages-2048kB"
        put(base + "/nr_hugepages", f"{hugepages if node == 0 else 0}\n")
        put(base + "/free_hugepages", f"{free if node == 0 else 0}\n")
    put("/proc/meminfo", f"MemTotal: 8000000 kB\nHugePages_Total: {hugepages}\nHugePages_Free: {free}\n"
                         "Hugepagesize:       2048 kB\n")
    put("/proc/mounts", "sysfs /sys sysfs rw 0 0\n" +
        ("hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n" if mounted else ""))
    os.makedirs(os.path.join(root, "dev/hugepages"), exist_ok=True)
    put("/proc/self/status", f"Name:\tsluice\nCapEff:\t{capeff}\n")
    for cpu, gov in (governors or {}).items():
        put(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor", gov + "\n")
    os.makedirs(os.path.join(root, "sys/kernel/iommu_groups"), exist_ok=True)
    for g in iommu_groups:
        os.makedirs(os.path.join(root, f"sys/kernel/iommu_groups/{g}"), exist_ok=True)
    put("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "Y\n" if noiommu else "N\n")
    for i, (addr, (node, driver, netdev)) in enumerate((pci or {}).items()):
        dev = os.path.join(root, "sys/bus/pci/devices", addr)
        put(f"/sys/bus/pci/devices/{addr}/numa_node", f"{node}\n")
        if driver:
            os.symlink(f"../../../bus/pci/drivers/{driver}", os.path.join(dev, "driver"))
        if iommu_groups:
            os.symlink(f"../../../kernel/iommu_groups/{iommu_groups[i % len(iommu_groups)]}",
                       os.path.join(dev, "iommu_group"))
        if netdev:
            os.makedirs(os.path.join(dev, "net", netdev))


def free_hugepage_mib():
    """Free hugepage memory of every page size, as the doctor counts it."""
    total = 0
    base = "/sys/kernel/mm/hugepages"
    for name in os.listdir(base) if os.path.isdir(base) else []:
        kb = int(name[len("hugepages-"):-2])
        with open(os.path.join(base, name, "free_hugepages")) as f:
            total += int(f.read()) * kb // 1024
    return total


def doctor(sluice, root, cfg, eal=None, json_out=False, user=None, memlock=None):
    """Runs sluice [EAL --] --doctor -c cfg [--json]; returns (rc, stdout, stderr)."""
    cmd = [sluice, *eal, "--"] if eal is not None else [sluice]
    cmd += ["--doctor", "-c", cfg] + (["--json"] if json_out else [])
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user if user != 'nobody' else 'nogroup'}",
               "--clear-groups", *cmd]
    if memlock is not None:
        cmd = ["prlimit", f"--memlock={memlock}", *cmd]
    env = dict(os.environ)
    if root is not None:
        env["SLUICE_HOST_ROOT"] = root
    else:
        env.pop("SLUICE_HOST_ROOT", None)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def lines(out):
    """{check name: (status, rest of the line)} of the text output."""
    found = {}
    for line in out.splitlines():
        m = re.match(r"(OK|WARN|FAIL)\s+([^:]+): (.*)$", line)
        if m:
            found[m.group(2)] = (m.group(1), m.group(3))
    return found


def status(out, name):
    return lines(out).get(name, ("missing", ""))


def config(d, name, ports, lcores="[1]", capture=None):
    text = "ports:\n" + "".join(f"  - name: {n}\n    device: \"{dev}\"\n" for n, dev in ports)
    text += f"workers:\n  lcores: {lcores}\nflows: flows.yaml\n"
    if capture:
        text += (f"capture:\n  lcore: 2\n  path: {capture}\n  chunk_bytes: 1MiB\n  segment_bytes: 2MiB\n"
                 "  retain_bytes: 4MiB\n  queue_depth: 4\n")
    return write(d, name, text)


def main():
    args = parse_args()
    s = args.sluice
    VDEVS = [("in", "net_null0"), ("out", "net_null1")]
    EAL = ["-l", "0-2"]

    # A binary without the --doctor hook would start the appliance instead: stop at once.
    try:
        p = subprocess.run([s, "--doctor", "-c", "/nonexistent/sluice.yaml"], capture_output=True, text=True,
                           timeout=20, stdin=subprocess.DEVNULL)
        hooked = p.returncode == 1 and re.search(r"^FAIL\s+config: cannot read /nonexistent/sluice\.yaml", p.stdout, re.M)
    except subprocess.TimeoutExpired:
        p, hooked = None, False
    if not check("sluice --doctor runs the doctor (app/main.cpp calls app::run_doctor)", hooked,
                 p and f"rc={p.returncode}\n{p.stdout}\n{p.stderr}"):
        report()

    with tempdir() as d:
        os.chmod(d, 0o755)
        write(d, "flows.yaml", FLOWS)
        root = os.path.join(d, "host")
        store = os.path.join(d, "store")
        os.mkdir(store)
        vdev = config(d, "vdev.yaml", VDEVS, capture=store)

        # A host that is ready: exit 0, no FAIL; the checks of CONTRACT "Operations" are there.
        make_host(root, governors={1: "performance", 2: "performance"})
        rc, out, err = doctor(s, root, vdev, EAL)
        found = lines(out)
        check("ready host: exit 0", rc == 0, f"rc={rc}\n{out}\n{err}")
        check("ready host: no FAIL", "FAIL" not in [v[0] for v in found.values()], out)
        for name in ["config", "lcores", "hugepages", "hugetlbfs", "port in", "port out", "iommu",
                     "isolation lcore 1", "isolation lcore 2", "cpu governor", "memlock", "capabilities",
                     "io_uring", "capture path", "capture space", "capture O_DIRECT"]:
            check(f"ready host: a line for '{name}'", name in found, out)
        check("ready host: hugepages OK with what is there and what is needed",
              status(out, "hugepages")[0] == "OK" and re.search(r"node0: 512 x 2 MiB \(512 free\); needs \d+ MiB",
                                                                 status(out, "hugepages")[1]), out)
        check("ready host: vdevs are OK 'virtual device'",
              status(out, "port in") == ("OK", "virtual device (net_null): no PCI checks"), out)
        check("ready host: isolated lcore OK", status(out, "isolation lcore 1")[0] == "OK", out)
        check("ready host: governor OK", status(out, "cpu governor")[0] == "OK", out)
        check("ready host: the last line counts", re.search(r"^doctor: \d+ OK, \d+ WARN, 0 FAIL", out, re.M), out)

        # --json: parses, one entry per line, the counts add up, the same exit code.
        rc_j, out_j, err_j = doctor(s, root, vdev, EAL, json_out=True)
        try:
            j = json.loads(out_j)
        except ValueError as e:
            j = None
            check("--json parses", False, f"{e}\n{out_j}")
        if j is not None:
            check("--json parses", True)
            check("--json: every check has name, status, detail, fix",
                  all(set(c) == {"name", "status", "detail", "fix"} for c in j["checks"]), out_j)
            check("--json: the same checks as the text", [c["name"] for c in j["checks"]] == list(found), out_j)
            check("--json: ok/warn/fail count the statuses",
                  all(j[k.lower()] == sum(1 for c in j["checks"] if c["status"] == k) for k in ["OK", "WARN", "FAIL"]),
                  out_j)
            check("--json: same exit code", rc_j == rc, f"{rc_j} vs {rc}")

        # No hugepages, EAL options without --no-huge: FAIL with the command that reserves them.
        make_host(root, hugepages=0)
        rc, out, err = doctor(s, root, vdev, EAL)
        st, text = status(out, "hugepages")
        m = re.search(r"needs (\d+) MiB", text)
        need_pages = -(-int(m.group(1)) // 2) if m else -1
        check("no hugepages (EAL -l, no --no-huge): FAIL, exit 1", st == "FAIL" and rc == 1, f"rc={rc}\n{out}")
        check("no hugepages: the fix reserves enough 2 MiB pages",
              f"-> fix: echo {need_pages} > /proc/sys/vm/nr_hugepages" in text, out)
        # Some in use: the new total counts them.
        make_host(root, hugepages=10, free=2)
        rc, out, err = doctor(s, root, vdev, EAL)
        check("hugepages in use: the fix adds the pages needed to those in use",
              f"echo {need_pages + 8} > /proc/sys/vm/nr_hugepages" in status(out, "hugepages")[1], out)
        # ... with --no-huge: none needed; -m is checked instead.
        make_host(root, hugepages=0)
        rc, out, err = doctor(s, root, vdev, ["-l", "0-2", "--no-huge", "-m", "512"])
        check("no hugepages with --no-huge -m 512: OK 'not needed', exit 0",
              status(out, "hugepages")[0] == "OK" and "not needed" in status(out, "hugepages")[1]
              and status(out, "memory")[0] == "OK" and rc == 0, f"rc={rc}\n{out}")
        rc, out, err = doctor(s, root, vdev, ["-l", "0-2", "--no-huge", "-m", "16"])
        check("--no-huge -m 16: FAIL memory with the -m that fits",
              status(out, "memory")[0] == "FAIL" and re.search(r"fix: -m \d+ among the EAL options", out) and rc == 1,
              f"rc={rc}\n{out}")
        make_host(root)
        rc, out, err = doctor(s, root, vdev, ["-l", "0-2", "-m", "16"])
        check("hugepages with -m 16: FAIL memory (EAL reserves no more than -m)",
              status(out, "memory")[0] == "FAIL" and status(out, "hugepages")[0] == "OK" and rc == 1, f"rc={rc}\n{out}")
        make_host(root, hugepages=0)
        # ... without EAL options, vdevs only: sluice may run with --no-huge: WARN naming both fixes.
        rc, out, err = doctor(s, root, vdev)
        st, text = status(out, "hugepages")
        check("no hugepages, no EAL options, vdevs: WARN (exit 0) with both fixes",
              st == "WARN" and "/proc/sys/vm/nr_hugepages" in text and "--no-huge -m" in text and rc == 0,
              f"rc={rc}\n{out}")
        # ... a PCI port needs them.
        pci_cfg = config(d, "pci.yaml", [("wan", "0000:3b:00.0"), ("lan", "0000:3b:00.1")])
        make_host(root, hugepages=0, pci={"0000:3b:00.0": (0, "vfio-pci", None), "0000:3b:00.1": (0, "vfio-pci", None)})
        rc, out, err = doctor(s, root, pci_cfg)
        check("no hugepages, PCI ports: FAIL", status(out, "hugepages")[0] == "FAIL" and rc == 1, f"rc={rc}\n{out}")
        # No hugetlbfs mount.
        make_host(root, mounted=False)
        rc, out, err = doctor(s, root, vdev, EAL)
        check("no hugetlbfs mount: FAIL with the mount command",
              status(out, "hugetlbfs")[0] == "FAIL" and "mount -t hugetlbfs nodev /dev/hugepages" in out and rc == 1,
              f"rc={rc}\n{out}")

        # An unisolated worker lcore: WARN with the boot parameters; no FAIL, so exit 0.
        make_host(root, isolated="", nohz="", cmdline_extra="")
        rc, out, err = doctor(s, root, vdev, EAL)
        st, text = status(out, "isolation lcore 1")
        check("unisolated worker lcore: WARN", st == "WARN" and "not in isolcpus" in text, out)
        check("unisolated worker lcore: the fix names isolcpus, nohz_full and rcu_nocbs",
              "-> fix: isolcpus=1-2 nohz_full=1-2 rcu_nocbs=1-2 on the kernel command line" in text, text)
        check("unisolated worker lcore: exit 0 (a WARN only)", rc == 0, f"rc={rc}\n{out}")
        make_host(root, isolated="1-2", nohz="", cmdline_extra="isolcpus=1-2")
        rc, out, err = doctor(s, root, vdev, EAL)
        check("isolcpus without nohz_full/rcu_nocbs: WARN saying which",
              status(out, "isolation lcore 1")[0] == "WARN" and "not nohz_full, not rcu_nocbs" in out
              and "not in isolcpus" not in out, out)
        # EAL's --lcores maps lcore 2 onto CPU 0: the CPU is what is checked.
        make_host(root, cpus="0-1", nodes={0: "0-1"}, isolated="1", nohz="1", cmdline_extra="rcu_nocbs=1")
        rc, out, err = doctor(s, root, vdev, ["--lcores=0@0,1@1,2@0", "--no-huge", "-m", "512"])
        check("--lcores 2@0: lcore 2 checked as CPU 0", status(out, "isolation lcore 2")[0] == "WARN"
              and "CPU 0:" in status(out, "isolation lcore 2")[1] and status(out, "lcores")[0] == "OK", out)
        rc, out, err = doctor(s, root, vdev, ["-l", "0-1"])
        check("lcore 2 on a 2-CPU host: FAIL lcores with the fix",
              status(out, "lcores")[0] == "FAIL" and "CPU 2 is not online" in out and "--lcores=" in out and rc == 1, out)
        make_host(root)
        rc, out, err = doctor(s, root, vdev, ["-l", "0,1"])
        check("lcore not in EAL's -l: FAIL with the -l that has it",
              status(out, "lcores")[0] == "FAIL" and "lcore 2 is not in EAL's lcore set 0-1" in out
              and "fix: -l 0-2 among the EAL options" in out, out)

        # CPU frequency governor: powersave WARNs with cpupower; none (a VM) is OK with a note.
        make_host(root, governors={1: "powersave", 2: "performance"})
        rc, out, err = doctor(s, root, vdev, EAL)
        check("governor powersave: WARN with cpupower", status(out, "cpu governor")[0] == "WARN"
              and "cpupower -c 1 frequency-set -g performance" in out, out)
        make_host(root)
        rc, out, err = doctor(s, root, vdev, EAL)
        check("no cpufreq (a VM): OK saying so", status(out, "cpu governor")[0] == "OK"
              and "no cpufreq" in status(out, "cpu governor")[1], out)

        # A missing capture path: FAIL with mkdir; exit 1.
        gone = os.path.join(d, "no", "such", "store")
        missing = config(d, "missing.yaml", VDEVS, capture=gone)
        rc, out, err = doctor(s, root, missing, EAL)
        check("missing capture path: FAIL with the mkdir fix, exit 1",
              status(out, "capture path")[0] == "FAIL" and f"-> fix: mkdir -p {gone}" in out and rc == 1,
              f"rc={rc}\n{out}")
        big = write(d, "big.yaml", open(vdev).read().replace("retain_bytes: 4MiB", "retain_bytes: 1000000GiB"))
        rc, out, err = doctor(s, root, big, EAL)
        check("retain_bytes beyond the free space: WARN", status(out, "capture space")[0] == "WARN"
              and "capture.retain_bytes" in out, out)

        # PCI ports: driver binding, IOMMU, NUMA.
        hw = {"0000:3b:00.0": (0, "vfio-pci", None), "0000:3b:00.1": (0, "ixgbe", "eth3")}
        make_host(root, pci=hw)
        rc, out, err = doctor(s, root, pci_cfg, EAL)
        check("PCI on vfio-pci: OK", status(out, "port wan")[0] == "OK" and "bound to vfio-pci" in out, out)
        check("PCI on a kernel driver: FAIL with dpdk-devbind",
              status(out, "port lan")[0] == "FAIL" and "ip link set eth3 down && modprobe vfio-pci && "
              "dpdk-devbind.py -b vfio-pci 0000:3b:00.1" in out and rc == 1, out)
        check("IOMMU groups present: OK", status(out, "iommu")[0] == "OK", out)
        check("NUMA: port and workers on node 0: OK", status(out, "numa wan")[0] == "OK", out)
        make_host(root, pci={"0000:3b:00.0": (0, "mlx5_core", "ens1f0"), "0000:3b:00.1": (0, None, None)})
        rc, out, err = doctor(s, root, pci_cfg, EAL)
        check("a bifurcated driver (mlx5_core): OK", status(out, "port wan")[0] == "OK" and "bifurcated" in out, out)
        check("PCI on no driver: FAIL with modprobe and dpdk-devbind",
              status(out, "port lan")[0] == "FAIL" and "modprobe vfio-pci && dpdk-devbind.py -b vfio-pci 0000:3b:00.1" in out, out)
        make_host(root, pci={"0000:3b:00.0": (0, "vfio-pci", None)})
        rc, out, err = doctor(s, root, pci_cfg, EAL)
        check("a PCI address that is not here: FAIL naming it",
              status(out, "port lan")[0] == "FAIL" and "no PCI device 0000:3b:00.1" in out, out)
        vfio_only = config(d, "vfio.yaml", [("wan", "0000:3b:00.0")])
        make_host(root, pci={"0000:3b:00.0": (0, "vfio-pci", None)}, iommu_groups=())
        rc, out, err = doctor(s, root, vfio_only, EAL)
        check("no IOMMU: FAIL with the boot parameter", status(out, "iommu")[0] == "FAIL"
              and "intel_iommu=on iommu=pt on the kernel command line" in out and rc == 1, out)
        make_host(root, pci={"0000:3b:00.0": (0, "vfio-pci", None)}, iommu_groups=(), noiommu=True)
        rc, out, err = doctor(s, root, vfio_only, EAL)
        check("vfio no-IOMMU mode: WARN", status(out, "iommu")[0] == "WARN" and rc == 0, f"rc={rc}\n{out}")
        make_host(root, nodes={0: "0-1", 1: "2-3"}, pci={"0000:3b:00.0": (1, "vfio-pci", None)})
        rc, out, err = doctor(s, root, vfio_only, EAL)
        check("NUMA: port on node 1, worker on node 0: WARN naming node 1's CPUs",
              status(out, "numa wan")[0] == "WARN" and "workers.lcores from node 1 (CPUs 2-3)" in out, out)

        # A config that does not load: exit 1 with file:line:col; a missing one is named.
        bad = write(d, "bad.yaml", "ports:\n  - name: wan\n    device: net_null0\n    mtu: big\nworkers:\n  lcores: [1]\nflows: flows.yaml\n")
        rc, out, err = doctor(s, root, bad)
        check("bad config: exit 1, FAIL config with file:line:col",
              rc == 1 and status(out, "config")[0] == "FAIL" and re.search(r"bad\.yaml:4:\d+: ports\[0\]\.mtu", out), f"rc={rc}\n{out}")
        absent = os.path.join(d, "absent.yaml")
        rc, out, err = doctor(s, root, absent, json_out=True)
        try:
            j = json.loads(out)
        except ValueError:
            j = {"checks": []}
        check("missing config, --json: exit 1, FAIL naming the path",
              rc == 1 and j.get("fail") == 1 and any(c["status"] == "FAIL" and absent in c["detail"] for c in j["checks"]),
              f"rc={rc}\n{out}")
        rc, out, err = doctor(s, root, "/dev/zero")
        check("config /dev/zero: exit 1 at once, says what it is",
              rc == 1 and "character device" in out, f"rc={rc}\n{out}")

        # Not root: memlock, capabilities and the hugetlbfs mount's owner are checked.
        if os.geteuid() == 0 and shutil.which("setpriv") and shutil.which("prlimit"):
            for dirpath, dirs, files in os.walk(d):
                for x in dirs + files:
                    p = os.path.join(dirpath, x)
                    if not os.path.islink(p):
                        os.chmod(p, 0o755)
            make_host(root, pci={"0000:3b:00.0": (0, "vfio-pci", None)}, capeff="0000000000000000")
            rc, out, err = doctor(s, root, vfio_only, EAL, user="nobody", memlock=65536)
            check("as nobody, memlock 64 KiB, a vfio port: FAIL memlock with the fix",
                  status(out, "memlock")[0] == "FAIL" and "ulimit -l unlimited" in out, f"rc={rc}\n{out}\n{err}")
            check("as nobody: the hugetlbfs mount not writable: FAIL with chown",
                  status(out, "hugetlbfs")[0] == "FAIL" and "chown nobody /dev/hugepages" in out, out)
            af = config(d, "af.yaml", [("in", "net_af_packet0,iface=lo"), ("out", "net_null0")])
            rc, out, err = doctor(s, root, af, ["-l", "0-1", "--no-huge", "-m", "512"], user="nobody")
            check("as nobody, an af_packet port: FAIL capabilities with setcap cap_net_raw",
                  status(out, "capabilities")[0] == "FAIL" and "setcap cap_net_raw+ep" in out, out)
        else:
            print("SKIPPED: the doctor as an unprivileged user (needs root, setpriv, prlimit)")

        # The real host: no fake tree. It runs (as nobody too: no root needed), prints a line
        # per check and JSON that parses; hugepages are judged against what the host has.
        rc, out, err = doctor(s, None, vdev, EAL, json_out=True)
        try:
            j = json.loads(out)
            check("real host --json: parses, exit 0 or 1 as its FAILs say", rc == (1 if j["fail"] else 0), f"rc={rc}\n{out}")
        except ValueError as e:
            check("real host --json: parses", False, f"{e}\n{out}\n{err}")
        # Other tests may take hugepages meanwhile: judge only when the count was steady.
        before = free_hugepage_mib()
        rc, out, err = doctor(s, None, vdev, EAL)
        after = free_hugepage_mib()
        m = re.search(r"needs (\d+) MiB", status(out, "hugepages")[1])
        if not m:
            check("real host: hugepages says what it needs", False, out)
        elif (before >= int(m.group(1))) == (after >= int(m.group(1))):
            want = "OK" if before >= int(m.group(1)) else "FAIL"
            check(f"real host: hugepages {want} ({before} MiB free, {m.group(1)} MiB needed)",
                  status(out, "hugepages")[0] == want, out)
        else:
            print("SKIPPED: real host hugepages (the free count changed during the run)")
        if os.geteuid() == 0 and shutil.which("setpriv"):
            rc, out, err = doctor(s, None, vdev, ["-l", "0-2", "--no-huge", "-m", "512"], user="nobody")
            check("real host as nobody: runs, no config or host read error", rc in (0, 1) and status(out, "config")[0] == "OK"
                  and "could not read" not in out, f"rc={rc}\n{out}\n{err}")

        p = subprocess.run([s, "--help"], capture_output=True, text=True)
        check("--help lists --doctor and --json", "--doctor" in p.stdout and "--json" in p.stdout, p.stdout)
        p = subprocess.run([s, "--json"], capture_output=True, text=True)
        check("--json without --doctor: usage error, exit 1", p.returncode == 1 and "--doctor" in p.stderr, p.stderr)
    report()


if __name__ == "__main__":
    main()
