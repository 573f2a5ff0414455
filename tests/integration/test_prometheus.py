#!/usr/bin/env python3
"""Prometheus /metrics of a running sluice (issue 10, acceptance 5).

lint: sluice forwards data/mixed.pcap (net_pcap infinite_rx) to a net_null sink, with the capture
store on; what /metrics serves passes `promtool check metrics` without a word, and the capture
and ring gauges are there.

serve (capture off): promtool again; Content-Type `text/plain; version=0.0.4`; 404 off /metrics;
the latency histogram of every worker is cumulative, in seconds, with +Inf == _count and a _sum;
per-worker rx, idle and stalled, and the health state set. Then 50 concurrent scrapes are each
answered within 100 ms of a lone scrape's time; with a client that sent requests and never reads,
one that sent half a request and one that sent nothing connected, scrapes are still answered
within 100 ms of that baseline; the idle timeout closes the half request; and with such clients
connected again, SIGTERM stops sluice cleanly (exit 0) within a few seconds.

dashboard: deploy/grafana/sluice.json parses, every query in it is valid PromQL (promtool check
rules, Grafana's variables filled in), and every sluice_* metric it names is one sluice serves.

bind: a port already in use is a startup error (exit 2) that says so and what to do.

promtool is in the `prometheus` package (tools/install-deps); without it the test says SKIPPED
and exits 77.
"""
import os
import re
import json
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from runner import Background, FORWARD_ALL, appliance, check, eal_args, parse_args, report, run, tempdir, write

PROMTOOL = shutil.which("promtool") or ("/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None)
CONCURRENT = 50
SLACK_S = 0.100            # acceptance 5: no scrape delayed by more than this
IDLE_TIMEOUT_S = 5         # PrometheusServer::kTimeoutS
STOP_WITHIN_S = 5
DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "grafana", "sluice.json")
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/metrics", timeout=5.0):
    """One request on its own connection: (status, headers dict in lower case, body text)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return parse_response(data)


def parse_response(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.\d (\d{3})", lines[0]) if lines else None
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return (int(m.group(1)) if m else 0), headers, body.decode("utf-8", "replace")


def scrapes(port, n, timeout=10.0):
    """n scrapes at once from one thread (non-blocking sockets, so the client adds no queueing of
    its own): the seconds each took from the common start to its last byte, and its response."""
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    conns = {}
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        conns[s] = {"out": REQUEST, "in": b"", "took": None}
        sel.register(s, selectors.EVENT_WRITE)
    open_ = n
    while open_ and time.monotonic() - t0 < timeout:
        for key, events in sel.select(timeout=0.5):
            s, c = key.fileobj, conns[key.fileobj]
            try:
                if events & selectors.EVENT_WRITE:
                    c["out"] = c["out"][s.send(c["out"]):]
                    if not c["out"]:
                        sel.modify(s, selectors.EVENT_READ)
                    continue
                chunk = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if chunk:
                c["in"] += chunk
                continue
            c["took"] = time.monotonic() - t0
            sel.unregister(s)
            s.close()
            open_ -= 1
    for s, c in conns.items():
        if c["took"] is None:
            sel.unregister(s)
            s.close()
    return [(c["took"], parse_response(c["in"])) for c in conns.values()]


def baseline(port):
    """A lone scrape's time: the median of seven."""
    times = [t for t, (status, _, _) in (scrapes(port, 1)[0] for _ in range(7)) if t is not None and status == 200]
    return statistics.median(times) if times else None


def promtool(text):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    return p.returncode, (p.stdout + p.stderr).strip()


def samples(text):
    """{(name, frozenset of (label, value))): value} of the exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            out[(m.group(1), frozenset(LABEL.findall(m.group(2) or "")))] = float(m.group(3))
    return out


def histograms_ok(s, name):
    """Every series of histogram `name`: buckets cumulative in le order, +Inf == _count, a _sum.
    Returns (series found, what is wrong)."""
    series = {}
    for (n, labels), v in s.items():
        if n == name + "_bucket":
            le = dict(labels).get("le")
            series.setdefault(labels - {("le", le)}, []).append((float("inf") if le == "+Inf" else float(le), v))
    for labels, buckets in series.items():
        buckets.sort()
        what = dict(labels)
        counts = [v for _, v in buckets]
        if buckets[-1][0] != float("inf"):
            return series, f"{what}: no +Inf bucket"
        if any(b < a for a, b in zip(counts, counts[1:])):
            return series, f"{what}: buckets not cumulative: {buckets}"
        count = s.get((name + "_count", labels))
        if count != counts[-1]:
            return series, f"{what}: +Inf {counts[-1]} != _count {count}"
        if (name + "_sum", labels) not in s:
            return series, f"{what}: no _sum"
    return series, ""


def wait_metrics(port, bg, ready, timeout=30):
    """Scrapes until ready(samples) holds (sluice up, traffic counted): the last text, or None."""
    deadline = time.monotonic() + timeout
    text = None
    while time.monotonic() < deadline and bg.proc.poll() is None:
        try:
            status, _, body = http_get(port)
            if status == 200:
                text = body
                if ready(samples(body)):
                    return text
        except OSError:
            pass
        time.sleep(0.2)
    return None


def stuck_clients(port):
    """A client that sent many requests and never reads (a small receive buffer, so the server's
    sends soon block), one that sent half a request, one that sent nothing."""
    never_reads = socket.socket()
    never_reads.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    never_reads.settimeout(5)
    never_reads.connect(("127.0.0.1", port))
    try:
        never_reads.sendall(b"GET /metrics HTTP/1.1\r\nHost: sluice\r\n\r\n" * 1000)
    except OSError:
        pass  # the server stopped reading: that is the point
    half = socket.create_connection(("127.0.0.1", port), timeout=5)
    half.sendall(b"GET /metr")
    silent = socket.create_connection(("127.0.0.1", port), timeout=5)
    time.sleep(0.3)  # let the server take them in and fill the first one's buffers
    return [never_reads, half, silent]


def dashboard_exprs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from ([v] if k == "expr" else dashboard_exprs(v))
    elif isinstance(node, list):
        for v in node:
            yield from dashboard_exprs(v)


def dashboard(text):
    """The Grafana dashboard against what sluice serves (text: a scrape with every family)."""
    tag = "dashboard"
    try:
        with open(DASHBOARD) as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        check(f"{tag}: {DASHBOARD} parses as JSON", False, str(e))
        return
    exprs = list(dashboard_exprs(dash))
    check(f"{tag}: parses as JSON, {len(exprs)} queries", len(exprs) > 10)
    fill = {"$__rate_interval": "1m", "$__range": "1h", "$instance": ".*", "$worker": ".*"}
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as rules:
        rules.write("groups:\n  - name: dashboard\n    rules:\n")
        for i, e in enumerate(exprs):
            for k, v in fill.items():
                e = e.replace(k, v)
            rules.write(f"      - record: dashboard:query{i}\n        expr: {json.dumps(e)}\n")
        rules.flush()
        p = subprocess.run([PROMTOOL, "check", "rules", rules.name], capture_output=True, text=True, timeout=60)
    check(f"{tag}: every query is valid PromQL (promtool check rules)", p.returncode == 0, p.stdout + p.stderr)
    served = set()  # every family sluice declares, with a histogram's series names
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
        served |= {m.group(1)} | ({m.group(1) + x for x in ("_bucket", "_sum", "_count")} if m.group(2) == "histogram" else set())
    named = {m for e in exprs for m in re.findall(r"\bsluice_[a-z0-9_]+", e)}
    unknown = sorted(named - served)
    check(f"{tag}: the {len(named)} sluice_* metrics it names are all families sluice serves", not unknown, f"not served: {unknown}")


def lint(sluice, data):
    tag = "lint"
    port = free_port()
    pcap = os.path.join(data, "mixed.pcap")
    with tempdir() as d:
        store = os.path.join(d, "store")
        os.mkdir(store)
        write(d, "flows.yaml", "version: 1\nnon_ip: { action: forward, to: out }\ndefault: { action: forward, to: out }\n"
                               "rules:\n  - name: all\n    action: forward\n    to: out\n    capture: true\n")
        cfg = write(d, "sluice.yaml", appliance(
            [("in", f"net_pcap0,rx_pcap={pcap},infinite_rx=1"), ("out", "net_null0,no-rx=1")],
            extra=f"capture:\n  lcore: 2\n  path: {store}\n  chunk_bytes: 64KiB\n  segment_bytes: 1MiB\n"
                  f"  retain_bytes: 4MiB\n  snaplen: 9000\ntelemetry:\n  prometheus: 127.0.0.1:{port}\n"))
        eal = ["--lcores=0@0,1@1,2@0", *eal_args(tag)[2:]]  # the capture lcore shares CPU 0
        bg = Background(sluice, eal, ["-c", cfg])
        text = wait_metrics(port, bg, lambda s: s.get(("sluice_capture_packets_total", frozenset()), 0) > 0)
        rc, log = bg.stop()
    check(f"{tag}: /metrics answered with capture packets counted", text is not None, log[-3000:])
    if text is None:
        return
    prc, out = promtool(text)
    check(f"{tag}: promtool check metrics: exit 0 and nothing to say", prc == 0 and out == "", f"rc={prc}\n{out}")
    s = samples(text)
    for name, labels in [("sluice_capture_ring_entries", {("state", "used")}),
                         ("sluice_capture_ring_entries", {("state", "capacity")}),
                         ("sluice_capture_status", {("status", "ok")}),
                         ("sluice_mempool_mbufs", {("state", "available")})]:
        check(f"{tag}: gauge {name}{dict(labels)} present", (name, frozenset(labels)) in s)
    dashboard(text)
    check(f"{tag}: capture ring capacity > 0", s.get(("sluice_capture_ring_entries", frozenset({("state", "capacity")})), 0) > 0)
    check(f"{tag}: exit 0", rc == 0, f"rc={rc}\n{log[-3000:]}")


def serve(sluice, data):
    tag = "serve"
    port = free_port()
    pcap = os.path.join(data, "mixed.pcap")
    worker0 = frozenset({("worker", "0"), ("lcore", "1")})
    with tempdir() as d:
        write(d, "flows.yaml", FORWARD_ALL)
        cfg = write(d, "sluice.yaml", appliance(
            [("in", f"net_pcap0,rx_pcap={pcap},infinite_rx=1"), ("out", "net_null0,no-rx=1")],
            extra=f"telemetry:\n  prometheus: 127.0.0.1:{port}\n"))
        eal = eal_args(tag)
        bg = Background(sluice, eal, ["-c", cfg])
        held, took = [], None
        try:
            check(f"{tag}: sluice logs where it serves", bg.wait_for(rf"prometheus: serving http://127\.0\.0\.1:{port}/metrics", timeout=60),
                  "".join(bg.lines)[-3000:])
            text = wait_metrics(port, bg, lambda s: s.get(("sluice_latency_seconds_count", worker0), 0) > 0, timeout=15)
            check(f"{tag}: worker 0's latency histogram has counted packets", text is not None, "".join(bg.lines)[-3000:])
            if text is None:
                text = http_get(port)[2]
            prc, out = promtool(text)
            check(f"{tag}: promtool check metrics: exit 0 and nothing to say", prc == 0 and out == "", f"rc={prc}\n{out}")
            status, headers, _ = http_get(port)
            check(f"{tag}: 200 with Content-Type text/plain; version=0.0.4",
                  status == 200 and headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
                  f"{status} {headers}")
            for path in ["/", "/metric", "/metrics/x", "/favicon.ico"]:
                status, _, _ = http_get(port, path)
                check(f"{tag}: {path} is 404", status == 404, str(status))

            s = samples(text)
            series, why = histograms_ok(s, "sluice_latency_seconds")
            check(f"{tag}: sluice_latency_seconds: buckets cumulative, +Inf == _count, _sum present ({len(series)} series)",
                  series and not why, why or "no series")
            check(f"{tag}: the histogram is per worker (worker=\"0\",lcore=\"1\")", worker0 in series, str(list(series)))
            les = sorted(le for le, _ in series.get(worker0, []))
            check(f"{tag}: bucket bounds are in seconds (microseconds to 100 ms)",
                  les and 1e-7 <= les[0] <= 1e-5 and les[-2] <= 1.0, str(les))
            for name, want in [("sluice_worker_rx_packets_total", lambda v: v > 0),
                               ("sluice_worker_stalled", lambda v: v == 0),
                               ("sluice_worker_idle_seconds", lambda v: 0 <= v < 1)]:
                v = s.get((name, worker0))
                check(f"{tag}: {name}{{worker=\"0\",lcore=\"1\"}} = {v}", v is not None and want(v))
            check(f"{tag}: sluice_health_status{{status=\"ok\"}} 1",
                  s.get(("sluice_health_status", frozenset({("status", "ok")}))) == 1)

            base = baseline(port)
            check(f"{tag}: a lone scrape is answered (baseline {base and base * 1000:.1f} ms)", base is not None)
            base = base or 0.0
            for phase in ["", "with stuck clients connected: "]:
                if phase:
                    held = stuck_clients(port)
                    one = scrapes(port, 1)[0]
                    check(f"{tag}: {phase}a lone scrape within {SLACK_S * 1000:.0f} ms of the baseline "
                          f"({one[0] and one[0] * 1000:.1f} ms)",
                          one[0] is not None and one[1][0] == 200 and one[0] <= base + SLACK_S)
                got = scrapes(port, CONCURRENT)
                ok = [t for t, (status, _, body) in got if t is not None and status == 200 and "sluice_uptime_seconds" in body]
                slowest = max((t for t, _ in got if t is not None), default=None)
                check(f"{tag}: {phase}{CONCURRENT} concurrent scrapes all answered 200", len(ok) == CONCURRENT,
                      f"{len(ok)} of {CONCURRENT}")
                check(f"{tag}: {phase}each within {SLACK_S * 1000:.0f} ms of the baseline "
                      f"(slowest {slowest and slowest * 1000:.1f} ms, baseline {base * 1000:.1f} ms)",
                      slowest is not None and slowest <= base + SLACK_S)

            # The idle timeout frees a stuck client's connection.
            half = held[1]
            half.settimeout(IDLE_TIMEOUT_S + 5)
            t0 = time.monotonic()
            try:
                closed = half.recv(4096) == b""
            except (ConnectionResetError, BrokenPipeError):
                closed = True
            except OSError:
                closed = False
            took = time.monotonic() - t0
            check(f"{tag}: a half request is closed by the idle timeout ({took:.1f} s)", closed, f"after {took:.1f} s")

            # Stuck clients connected again, then SIGTERM: a clean stop all the same.
            held += stuck_clients(port)
            t0 = time.monotonic()
            bg.proc.send_signal(signal.SIGTERM)
            try:
                bg.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            took = time.monotonic() - t0
        finally:
            rc, log = bg.stop(timeout=10)
            for c in held:
                c.close()
        check(f"{tag}: SIGTERM with stuck clients connected: exit 0", rc == 0, f"rc={rc}\n{log[-3000:]}")
        check(f"{tag}: ... within {STOP_WITHIN_S} s ({took or 0:.1f} s)", took is not None and took <= STOP_WITHIN_S,
              log[-3000:])


def bind_error(sluice, data):
    tag = "bind"
    with tempdir() as d, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        write(d, "flows.yaml", FORWARD_ALL)
        cfg = write(d, "sluice.yaml", appliance([("in", "net_null0"), ("out", "net_null1,no-rx=1")],
                                                extra=f"telemetry:\n  prometheus: 127.0.0.1:{port}\n"))
        rc, _, err = run(sluice, eal_args(tag), ["-c", cfg, "--duration", "2"])
    check(f"{tag}: a port in use: exit 2", rc == 2, f"rc={rc}\n{err[-2000:]}")
    check(f"{tag}: ... the error names the key, the port in use and the fix",
          re.search(rf"telemetry\.prometheus: cannot listen on 127\.0\.0\.1:{port}: .*in use.*pick a free port", err),
          err[-2000:])


def main():
    args = parse_args()
    if PROMTOOL is None:
        print("SKIPPED: promtool not found (package prometheus; tools/install-deps installs it). "
              "CI runs this test; install it to run it here.", flush=True)
        sys.exit(77)
    lint(args.sluice, args.data)
    serve(args.sluice, args.data)
    bind_error(args.sluice, args.data)
    report()


if __name__ == "__main__":
    main()
