"""A DPDK telemetry client (what dpdk-telemetry.py does, as a library): one connection to
/var/run/dpdk/<file-prefix>/dpdk_telemetry.v2, one JSON reply per command."""
import json
import os
import socket
import time


def runtime_dir(eal):
    """EAL's runtime folder for the --file-prefix in an EAL argument list."""
    prefix = next(a.split("=", 1)[1] for a in eal if a.startswith("--file-prefix="))
    base = "/var/run/dpdk" if os.geteuid() == 0 else os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/tmp"), "dpdk")
    return os.path.join(base, prefix)


class Telemetry:
    def __init__(self, eal, wait_s=30):
        path = os.path.join(runtime_dir(eal), "dpdk_telemetry.v2")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        info = json.loads(self.sock.recv(1024))
        self.max_len = info["max_output_len"]

    def cmd(self, command, timeout=180):
        """Sends "/cmd[,params]"; returns the reply's value (None when the command failed)."""
        self.sock.settimeout(timeout)
        self.sock.send(command.encode())
        reply = json.loads(self.sock.recv(self.max_len))
        return reply[command.split(",", 1)[0]]

    def close(self):
        self.sock.close()
