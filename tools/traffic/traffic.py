"""The machinery of tools/traffic-test and tests/traffic: DPDK processes on memif ports.

A Session owns a temp folder (sockets, configs), the processes it starts and their EAL file
prefixes; teardown() stops every process (SIGINT, again, then SIGKILL), removes what EAL
leaves behind (/var/run/dpdk/<prefix>, hugepage files) and the temp folder, and leftovers()
proves nothing remains. Every EAL gets --huge-unlink (no hugepage files even after a
SIGKILL) and a prefix of its own.

Lcores on a 2-CPU machine: each process's busy loop gets a CPU of its own where it can: the
DUT's worker (sluice or testpmd) on CPU 1 and the generator's TX+RX lcore on CPU 0; each
main lcore (control plane, mostly asleep) on the other CPU. placement() says so.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HUGEPAGES = Path("/dev/hugepages")


def runtime_dir():
    return Path("/var/run/dpdk") if os.geteuid() == 0 else Path(os.environ.get("XDG_RUNTIME_DIR", "/tmp")) / "dpdk"


class Failure(Exception):
    """A run failed; the message says what and why."""


class Skip(Exception):
    """The run cannot happen here (no hugepages); the message says what is missing."""


# ---- environment --------------------------------------------------------------------------

def hugepages_free():
    """(hugetlbfs mounted, free 2 MiB pages)."""
    mounted = any(line.split()[2] == "hugetlbfs" for line in open("/proc/mounts") if len(line.split()) > 2)
    free = 0
    for line in open("/proc/meminfo"):
        if line.startswith("HugePages_Free"):
            free = int(line.split()[1])
    return mounted, free


def require_hugepages(mib):
    """Raises Skip unless hugetlbfs is mounted with `mib` MiB of free 2 MiB pages."""
    mounted, free = hugepages_free()
    if not mounted or free * 2 < mib:
        raise Skip(f"memif between processes needs hugepages: {mib} MiB free wanted, "
                   f"{free * 2} MiB free{'' if mounted else ', no hugetlbfs mount'} "
                   "(as root: echo 512 > /proc/sys/vm/nr_hugepages; mount -t hugetlbfs nodev /dev/hugepages; "
                   "tools/test does both)")


class Binaries:
    def __init__(self, build=None):
        build = Path(build) if build else ROOT / "build"
        self.sluice = build / "app" / "sluice"
        self.gen = build / "tools" / "sluice-gen"
        self.testpmd = shutil.which("dpdk-testpmd") or "/usr/bin/dpdk-testpmd"
        for b in (self.sluice, self.gen):
            if not b.exists():
                raise Failure(f"{b} is missing: build first (meson setup build && ninja -C build)")


def placement(cpus=None):
    """CPUs for (dut_main, dut_worker, gen_main, gen_worker, sink_worker)."""
    cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    if len(cpus) == 1:
        c = cpus[0]
        return dict(dut_main=c, dut_worker=c, gen_main=c, gen_worker=c, sink_worker=c)
    if len(cpus) == 2:
        return dict(dut_main=cpus[0], dut_worker=cpus[1], gen_main=cpus[1], gen_worker=cpus[0], sink_worker=cpus[0])
    # More CPUs: every busy loop its own, main lcores together on the first.
    extra = cpus[3] if len(cpus) > 3 else cpus[2]
    return dict(dut_main=cpus[0], dut_worker=cpus[1], gen_main=cpus[0], gen_worker=cpus[2], sink_worker=extra)


def placement_text(p):
    return (f"DUT main lcore on CPU {p['dut_main']}, DUT forwarding lcore on CPU {p['dut_worker']}; "
            f"sluice-gen main lcore on CPU {p['gen_main']}, TX+RX lcore on CPU {p['gen_worker']}")


def eal(prefix, main_cpu, worker_cpu, mem, vdevs=()):
    args = ["--lcores", f"0@{main_cpu},1@{worker_cpu}", "--socket-mem", str(mem), "--huge-unlink", "--no-pci",
            f"--file-prefix={prefix}", "--log-level=lib.eal:error", "--log-level=pmd.net.memif:error"]
    for v in vdevs:
        args += ["--vdev", v]
    return args


def memif(index, role, sock, rsize):
    return f"net_memif{index},role={role},id=0,socket={sock},socket-abstract=no,rsize={rsize}"


def signal_name(n):
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


# ---- processes ----------------------------------------------------------------------------

def processes():
    """(pid, argv as bytes) of every process on the machine that can be read."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            yield pid, Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue


class Proc:
    """One child process, its output in logdir/<name>.log, in a session of its own."""

    def __init__(self, name, cmd, logdir, prefix=None, interactive=False, env=None):
        self.name, self.cmd, self.prefix = name, [str(c) for c in cmd], prefix
        self.log_path = Path(logdir) / f"{name}.log"
        self._log = open(self.log_path, "w")
        self._log.write("$ " + " ".join(self.cmd) + "\n")
        self._log.flush()
        self.p = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
                                  start_new_session=True, text=True,
                                  env=dict(os.environ, **env) if env else None)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    @property
    def returncode(self):
        return self.p.poll()

    def exit_text(self):
        rc = self.p.poll()
        if rc is None:
            return "still running"
        if rc < 0:
            return f"killed by {signal_name(-rc)}"
        return "exited cleanly (0)" if rc == 0 else f"exited with code {rc}"

    def output(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines=15):
        return "\n".join("      | " + line for line in self.output().splitlines()[-lines:])

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        try:
            self.p.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self):
        """SIGINT, again after 3 s, SIGKILL after 5 more (to the whole process group)."""
        for sig, grace in ((signal.SIGINT, 3), (signal.SIGINT, 5), (signal.SIGKILL, 5)):
            if not self.alive():
                break
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            self.wait(grace)
        self.wait(1)
        if self.p.stdin:
            try:
                self.p.stdin.close()
            except OSError:
                pass
        self._log.close()


class Session:
    """Temp folder, processes and DPDK prefixes of one run; teardown() leaves nothing behind."""

    def __init__(self, tag, logdir):
        self.tag = re.sub(r"[^A-Za-z0-9]", "", tag)[:12] or "run"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"sluice-tt-{self.tag}-"))
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.prefixes, self.procs = [], []
        self._n = 0
        print(f"traffic-test: temp folder {self.tmp}, logs {self.logdir}", flush=True)

    def prefix(self, role):
        self._n += 1
        p = f"tt{os.getpid()}{self.tag}-{role}{self._n}"
        self.prefixes.append(p)
        return p

    def start(self, name, cmd, prefix=None, interactive=False, quiet=False, env=None):
        """Starts cmd (env: variables added to ours); its output goes to logdir/<name>.log
        (<name>-2.log, ... on reuse)."""
        used = sum(1 for p in self.procs if p.name == name or p.name.startswith(name + "#"))
        proc = Proc(name if not used else f"{name}#{used + 1}", cmd, self.logdir, prefix, interactive, env)
        self.procs.append(proc)
        if not quiet:
            print(f"traffic-test: started {name} pid {proc.pid}" + (f" (prefix {prefix})" if prefix else ""), flush=True)
        return proc

    def check_alive(self, procs, what):
        """Fails the run naming every process of procs that is gone (a peer may follow)."""
        dead = [p for p in procs if not p.alive()]
        if dead:
            raise Failure("; ".join(f"{p.name} (pid {p.pid}) {p.exit_text()} {what}" for p in dead) +
                          "\n" + "\n".join(p.tail() for p in dead))

    def wait_until(self, cond, timeout, watch, what):
        """Polls cond() until true; a watched process that exits, or the timeout, fails the run."""
        deadline = time.monotonic() + timeout
        while True:
            if cond():
                return
            self.check_alive(watch, what)
            if time.monotonic() > deadline:
                raise Failure(f"timed out after {timeout:.0f} s {what}")
            time.sleep(0.02)

    def teardown(self):
        """Stops every process; removes runtime folders, stray hugepage files and the temp
        folder. Returns notes on anything that had to be cleaned beyond the expected."""
        notes = []
        for p in self.procs:
            if p.alive():
                p.stop()
            else:
                p.stop()  # closes the log
        for prefix in self.prefixes:
            shutil.rmtree(runtime_dir() / prefix, ignore_errors=True)  # EAL leaves it on every exit
            stray = list(HUGEPAGES.glob(f"{prefix}map_*")) if HUGEPAGES.is_dir() else []
            for f in stray:
                try:
                    f.unlink()
                except OSError:
                    pass
            if stray:
                notes.append(f"removed {len(stray)} stray hugepage files of {prefix}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        return notes

    def leftovers(self):
        """Everything of this session still on the machine: processes, files, sockets."""
        left = []
        for pid, args in processes():
            for prefix in self.prefixes:
                if f"--file-prefix={prefix}".encode() in args:
                    left.append(f"process {pid} ({args[0].decode(errors='replace')}) of prefix {prefix}")
        for prefix in self.prefixes:
            if (runtime_dir() / prefix).exists():
                left.append(f"{runtime_dir() / prefix}")
            if HUGEPAGES.is_dir():
                left += [str(f) for f in HUGEPAGES.glob(f"{prefix}map_*")]
        if self.tmp.exists():
            left.append(f"{self.tmp} (sockets, configs)")
        return left


# ---- testpmd, interactive -----------------------------------------------------------------

FWD_STATS = re.compile(
    r"Forward statistics for port (\d+)\s+-+\s+RX-packets:\s*(\d+)\s+RX-dropped:\s*(\d+)\s+RX-total:\s*(\d+)\s+"
    r"TX-packets:\s*(\d+)\s+TX-dropped:\s*(\d+)\s+TX-total:\s*(\d+)")


class Testpmd:
    """dpdk-testpmd -i driven through its prompt: start, stop (returns the forward statistics
    per port), quit. Its counters are read at 'stop', while its peers are still connected."""

    def __init__(self, session, name, binaries, prefix, main_cpu, worker_cpu, mem, vdevs, mode, extra=()):
        # stdbuf: testpmd prints with stdio, which a file would buffer until exit.
        cmd = ["stdbuf", "-oL", binaries.testpmd, *eal(prefix, main_cpu, worker_cpu, mem, vdevs), "--", "-i",
               f"--forward-mode={mode}", "--nb-cores=1", "--total-num-mbufs=16384", "--rxd=1024", "--txd=1024",
               "--burst=32", "--disable-link-check", *extra]
        self.proc = session.start(name, cmd, prefix, interactive=True)
        self.session = session

    def _wait_output(self, pattern, start, timeout, what):
        rx = re.compile(pattern)
        self.session.wait_until(lambda: rx.search(self.proc.output(), start) is not None, timeout, [self.proc], what)

    def ready(self, timeout=30):
        self._wait_output(r"testpmd> ", 0, timeout, f"waiting for {self.proc.name}'s prompt")

    def start(self):
        self.proc.send("start")

    def stop(self, timeout=20):
        """Stops forwarding; returns {port: {rx, rx_dropped, tx, tx_dropped, tx_total}}."""
        mark = len(self.proc.output())
        self.proc.send("stop")
        self._wait_output(r"Done\.", mark, timeout, f"waiting for {self.proc.name} to stop forwarding")
        stats = {}
        for m in FWD_STATS.finditer(self.proc.output(), mark):
            port, rx, rxd, _, tx, txd, txt = (int(x) for x in m.groups())
            stats[port] = dict(rx=rx, rx_dropped=rxd, tx=tx, tx_dropped=txd, tx_total=txt)
        if not stats:
            raise Failure(f"{self.proc.name}: no forward statistics after 'stop'\n{self.proc.tail()}")
        return stats

    def quit(self, timeout=20):
        if self.proc.alive():
            self.proc.send("quit")
            self.proc.wait(timeout)


# ---- sluice -------------------------------------------------------------------------------

def forward_all(path, to):
    """A flows file with no rules that forwards everything (IP or not) out of port `to`."""
    Path(path).write_text(yaml.safe_dump({"version": 1, "non_ip": {"action": "forward", "to": to},
                                          "default": {"action": "forward", "to": to}, "rules": []}))
    return path


def sluice_config(path, ports, flows_file, workers=(1,)):
    """ports: [(name, device)]."""
    text = "ports:\n" + "".join(f"  - name: {n}\n    device: \"{d}\"\n" for n, d in ports)
    text += f"workers:\n  lcores: [{', '.join(str(w) for w in workers)}]\n  burst: 32\nflows: {flows_file}\n"
    Path(path).write_text(text)
    return path


class AttrDict(dict):
    """JSON objects for expectations: gen.rx.lost as well as sluice.drops['runt']."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None


def attr(obj):
    if isinstance(obj, dict):
        return AttrDict({k: attr(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return [attr(v) for v in obj]
    return obj


SAFE_BUILTINS = {"sum": sum, "len": len, "min": min, "max": max, "abs": abs, "all": all, "any": any,
                 "round": round, "sorted": sorted}


def evaluate(expectations, namespace):
    """[(expression, ok, detail)] for each expectation (a Python expression on the namespace)."""
    ns = {k: attr(v) for k, v in namespace.items()}
    out = []
    for expr in expectations:
        try:
            # One namespace (globals), so generator expressions see the names too.
            ok = bool(eval(expr, {"__builtins__": SAFE_BUILTINS, **ns}))  # noqa: S307 (committed scenarios)
            detail = "" if ok else explain(expr, ns)
        except Exception as e:  # noqa: BLE001
            ok, detail = False, f"cannot evaluate: {type(e).__name__}: {e}"
        out.append((expr, ok, detail))
    return out


def explain(expr, ns):
    """The values of the dotted names in a failed expectation."""
    vals = []
    for name in sorted(set(re.findall(r"\b(?:gen|sluice|sinks|result|trial)(?:\.[A-Za-z_][A-Za-z0-9_]*|\[[^\]]+\])+", expr))):
        try:
            vals.append(f"{name} = {eval(name, {'__builtins__': SAFE_BUILTINS, **ns})!r}")  # noqa: S307
        except Exception:  # noqa: BLE001
            pass
    return "; ".join(vals)


def load_json(path, what):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise Failure(f"{what}: cannot read {path}: {e}") from None


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)
