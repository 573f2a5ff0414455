"""Small harness for sluice integration tests: temp configs, running sluice, checks.

Each test script calls check(name, condition, detail) and finally report(), which prints
"N passed, N failed" as its last line and exits non-zero on any failure.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

_results = []


def parse_args():
    """--sluice BINARY --data DIR, both made absolute (tests write configs in temp dirs)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True, help="the sluice binary")
    ap.add_argument("--data", required=True, help="tests/integration/data")
    args = ap.parse_args()
    args.data = os.path.abspath(args.data)
    args.sluice = os.path.abspath(args.sluice)
    return args


def check(name, ok, detail=""):
    _results.append((name, bool(ok)))
    print(f"{'PASS' if ok else 'FAIL'}: {name}" + ("" if ok or not detail else f"\n      {detail}"))
    return bool(ok)


def report():
    passed = sum(1 for _, ok in _results if ok)
    failed = len(_results) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or not _results else 0)


def write(dirname, name, text):
    path = os.path.join(dirname, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def eal_args(prefix, lcores="0,1", mem=("--no-huge", "-m", "512")):
    return ["-l", lcores, *mem, "--no-pci", "--no-shconf", f"--file-prefix={prefix}-{os.getpid()}",
            "--log-level=lib.eal:error"]


def runtime_base():
    """Where EAL puts its runtime folders: /var/run/dpdk as root, else under XDG_RUNTIME_DIR."""
    return "/var/run/dpdk" if os.geteuid() == 0 else os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/tmp"), "dpdk")


def remove_runtime_dir(eal):
    """What EAL leaves in <runtime_base>/<file-prefix> after a failure or a kill: remove it."""
    for a in eal or []:
        if a.startswith("--file-prefix="):
            shutil.rmtree(os.path.join(runtime_base(), a.split("=", 1)[1]), ignore_errors=True)


def run(sluice, eal, app, timeout=60):
    """Runs sluice to completion; returns (exit code, stdout, stderr)."""
    cmd = [sluice, *eal, "--", *app] if eal is not None else [sluice, *app]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    finally:
        remove_runtime_dir(eal)
    return p.returncode, p.stdout, p.stderr


def start(sluice, eal, app):
    cmd = [sluice, *eal, "--", *app]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def pool_lines_ok(log, held_at_start=0):
    """The pool is full before the ports start, but for the mbufs drivers hold by then
    (held_at_start: net_pcap's infinite_rx reads its whole file into mbufs when its queue is
    set up, one per frame), and every mbuf is back in it after the ports are closed."""
    created = re.search(r"mempool (\S+): (\d+) mbufs x", log)
    before = re.search(r"mempool (\S+): (\d+)/(\d+) mbufs available before start", log)
    after = re.search(r"mempool: all (\d+) mbufs returned", log)
    if not created or not before or not after:
        return False, "missing pool level lines in the log"
    if not created.group(2) == before.group(3) == after.group(1):
        return False, f"pool sizes differ: created {created.group(2)}, before start {before.group(3)}, returned {after.group(1)}"
    total, available = int(before.group(3)), int(before.group(2))
    if total - available != held_at_start:
        return False, (f"before start {available}/{total} mbufs available: {total - available} taken, "
                       f"expected {held_at_start} (held by the drivers)")
    return True, ""


def pcap_frames(path):
    """Frames in a classic pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    n, off = 0, 24
    while off + 16 <= len(data):
        off += 16 + int.from_bytes(data[off + 8:off + 12], "little")
        n += 1
    return n


def appliance(ports, flows="flows.yaml", lcores="[1]", extra=""):
    text = "ports:\n"
    for name, device in ports:
        text += f"  - name: {name}\n    device: \"{device}\"\n"
    text += f"workers:\n  lcores: {lcores}\n  burst: 32\nflows: {flows}\n{extra}"
    return text


FORWARD_ALL = "version: 1\nnon_ip: { action: forward, to: out }\ndefault: { action: forward, to: out }\nrules: []\n"


def tempdir():
    return tempfile.TemporaryDirectory(prefix="sluice-it-")


class Background:
    """sluice running in the background (app: its options after "--"), stderr collected line by
    line so a test can wait for what it logs."""

    def __init__(self, binary, eal, app, env=None):
        self.eal = eal
        self.proc = subprocess.Popen([binary, *eal, "--", *app], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, env=env)
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    def count(self, pattern):
        with self.cond:
            return sum(1 for l in self.lines if re.search(pattern, l))

    def wait_for(self, pattern, at_least=1, timeout=60):
        """Waits until at least `at_least` log lines match pattern; False when sluice exits or
        the time runs out first."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while sum(1 for l in self.lines if re.search(pattern, l)) < at_least:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self.cond.wait(left)
        return True

    def stop(self, timeout=120):
        """SIGTERM, wait (SIGKILL after timeout); returns (exit code, the whole log)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=10)
        remove_runtime_dir(self.eal)
        return self.proc.returncode, "".join(self.lines)
