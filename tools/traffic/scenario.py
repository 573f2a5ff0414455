"""Scenarios: a YAML file naming the topology, sluice's flows, the generator's settings and
the expectations; run as one fixed-rate trial or as an NDR/PDR binary search.

    name: forward-all
    description: ...
    topology:                 # all optional but ports/tx/rx
      dut: sluice             # sluice | testpmd-io (the anchor: testpmd --forward-mode=io)
      role: server            # memif role of the DUT's ports; the generator takes the other
      ports: [wan, lan]       # DUT ports in order (port ids 0..n-1)
      tx: wan                 # sluice-gen sends into this port...
      rx: lan                 # ...and checks what comes out of this one
      sinks: [tap]            # other ports, each read by an rxonly sluice-gen
      rsize: 12               # memif ring of 2^rsize slots
      mem: 128                # MiB of hugepages per process
    sluice:
      flows: {...}            # a flows file inline, or a path relative to the scenario
      rules: 1000             # or: tools/bench/rules.py's N rules forwarding to rx
    generator:                # sluice-gen's options by name (see sluice-gen --help)
      mode: flowgen
      flows: 16
      size: 64,512,1518
      rate: 20000             # pps
      duration: 2
      retry: true             # fixed trials: a lossless sender (refused packets offered again)
    search: { trial: 1, resolution: 0.05, loss: 0.001, confirm: 1, final: 3 }   # defaults: the
                              # pdr tolerance, repeats of a failing trial, final trial seconds
    expect:                   # a trial: Python expressions on gen, sluice (or dut), sinks, trial
      - gen.rx.lost == 0
    expect_search:            # a search: on result (rate_pps, upper_bound_pps, limited_by:
      - result.rate_pps > 0   #   dut|generator, final_ok, latency_at_half, ndr_pps, pdr_pps, ...), trials
"""
import json
import os
import sys
import time
from pathlib import Path

import traffic as T

TOPOLOGY_KEYS = {"dut", "role", "ports", "tx", "rx", "sinks", "rsize", "mem"}
GEN_KEYS = {"mode", "flows", "size", "proto", "ipv6", "src", "dst", "sport", "dport", "dport_count", "pcap",
            "malformed_share", "rate", "duration", "count", "burst", "retry", "max_lag_us"}
TOP_KEYS = {"name", "description", "topology", "sluice", "generator", "search", "expect", "expect_search"}


def load(path):
    """The scenario as a dict, checked; errors name the file and the key."""
    path = Path(path)
    try:
        scn = T.load_yaml(path)
    except (OSError, ValueError) as e:
        raise T.Failure(f"{path}: {e}") from None
    return check(scn, path)


def check(scn, path):
    where = str(path)

    def bad(msg):
        raise T.Failure(f"{where}: {msg}")

    if not isinstance(scn, dict):
        bad("expected a mapping with name, topology, generator, expect")
    for k in scn:
        if k not in TOP_KEYS:
            bad(f"unknown key '{k}' (expected one of {', '.join(sorted(TOP_KEYS))})")
    topo = scn.setdefault("topology", {})
    for k in topo:
        if k not in TOPOLOGY_KEYS:
            bad(f"topology: unknown key '{k}' (expected one of {', '.join(sorted(TOPOLOGY_KEYS))})")
    topo.setdefault("dut", "sluice")
    topo.setdefault("role", "server")
    topo.setdefault("ports", ["wan", "lan"])
    topo.setdefault("tx", topo["ports"][0])
    topo.setdefault("rx", topo["ports"][-1])
    topo.setdefault("sinks", [])
    topo.setdefault("rsize", 12)
    topo.setdefault("mem", 128)
    if topo["dut"] not in ("sluice", "testpmd-io"):
        bad(f"topology.dut: expected sluice or testpmd-io, got {topo['dut']!r}")
    if topo["role"] not in ("server", "client"):
        bad(f"topology.role: expected server or client, got {topo['role']!r}")
    for k in ["tx", "rx", *topo["sinks"]]:
        name = topo.get(k, k)
        if name not in topo["ports"]:
            bad(f"topology: port {name!r} is not in topology.ports {topo['ports']}")
    if topo["dut"] == "testpmd-io" and (len(topo["ports"]) != 2 or topo["sinks"]):
        bad("topology: testpmd-io forwards between exactly two ports and has no sinks")
    gen = scn.setdefault("generator", {})
    for k in gen:
        if k not in GEN_KEYS:
            bad(f"generator: unknown key '{k}' (expected one of {', '.join(sorted(GEN_KEYS))})")
    if "pcap" in gen and not os.path.isabs(gen["pcap"]):
        gen["pcap"] = str((Path(path).parent / gen["pcap"]).resolve())
    sl = scn.setdefault("sluice", {})
    for k in sl:
        if k not in ("flows", "rules"):
            bad(f"sluice: unknown key '{k}' (expected flows or rules)")
    if topo["dut"] == "sluice" and not sl:
        bad("sluice: give flows (inline or a path) or rules: N")
    if isinstance(sl.get("flows"), str) and not os.path.isabs(sl["flows"]):
        sl["flows"] = str((Path(path).parent / sl["flows"]).resolve())
    for k in ("expect", "expect_search"):
        if not isinstance(scn.get(k, []), list):
            bad(f"{k}: expected a list of expressions")
    scn.setdefault("name", Path(path).stem)
    scn.setdefault("search", {})
    return scn


# What a paced search trial's sender may make up at once after falling behind, in
# microseconds of its rate (sluice-gen --max-lag-us; scenario key generator.max_lag_us).
SEARCH_MAX_LAG_US = 100


def gen_args(g, rate, duration, retry):
    """sluice-gen options from the generator settings."""
    args = []
    for k in ("mode", "flows", "size", "proto", "src", "dst", "sport", "dport", "dport_count", "pcap",
              "malformed_share", "count", "burst"):
        if k in g:
            args += [f"--{k.replace('_', '-')}", str(g[k])]
    if g.get("ipv6"):
        args.append("--ipv6")
    args += ["--rate", str(rate), "--duration", str(duration)]
    if retry:
        args.append("--tx-retry")
    return args


class Topology:
    """The DUT (sluice or testpmd io), the sinks, and sluice-gen, wired by memif sockets."""

    def __init__(self, scn, bins, session):
        self.scn, self.bins, self.s = scn, bins, session
        t = scn["topology"]
        self.t = t
        self.place = T.placement()
        self.gen_role = "client" if t["role"] == "server" else "server"
        # A folder per bring-up: sockets and the start file of an earlier trial must not be
        # mistaken for this one's.
        session.bring_ups = getattr(session, "bring_ups", 0) + 1
        self.dir = session.tmp / f"up{session.bring_ups}"
        self.dir.mkdir()
        self.sock = {p: self.dir / f"{p}.sock" for p in t["ports"]}
        self.start_file = self.dir / "start"
        self.dut = None
        self.testpmd = None
        self.sinks = {}
        self.sink_json = {}
        self.stats_path = self.dir / "sluice-stats.json"
        self.trials = 0

    # -- processes --

    def _dut_devices(self):
        return [T.memif(i, self.t["role"], self.sock[p], self.t["rsize"]) for i, p in enumerate(self.t["ports"])]

    def start_dut(self):
        p, mem = self.place, self.t["mem"]
        if self.t["dut"] == "sluice":
            flows = self.scn["sluice"].get("flows")
            flows_path = self.dir / "flows.yaml"
            if "rules" in self.scn["sluice"]:
                sys.path.insert(0, str(T.ROOT / "tools" / "bench"))
                from rules import flows_yaml  # noqa: PLC0415
                flows_path.write_text(flows_yaml(int(self.scn["sluice"]["rules"]), to=self.t["rx"]))
            elif isinstance(flows, str):
                flows_path = Path(flows)
            else:
                flows_path.write_text(T.yaml.safe_dump(flows, sort_keys=False))
            cfg = T.sluice_config(self.dir / "sluice.yaml", list(zip(self.t["ports"], self._dut_devices())), flows_path)
            prefix = self.s.prefix("sluice")
            self.dut = self.s.start("sluice", [self.bins.sluice, *T.eal(prefix, p["dut_main"], p["dut_worker"], mem),
                                               "--", "-c", cfg, "--stats-out", self.stats_path], prefix)
        else:
            prefix = self.s.prefix("testpmd")
            self.testpmd = T.Testpmd(self.s, "testpmd-io", self.bins, prefix, p["dut_main"], p["dut_worker"], mem,
                                     self._dut_devices(), "io")
            self.dut = self.testpmd.proc

    def _gen_devices(self, ports):
        return [T.memif(i, self.gen_role, self.sock[name], self.t["rsize"]) for i, name in enumerate(ports)]

    def start_sinks(self):
        p = self.place
        for name in self.t["sinks"]:
            prefix = self.s.prefix("sink")
            self.sink_json[name] = self.dir / f"sink-{name}.json"
            self.sinks[name] = self.s.start(
                f"sink-{name}", [self.bins.gen, *T.eal(prefix, p["gen_main"], p["sink_worker"], 64, self._gen_devices([name])),
                                 "--", "--mode", "rxonly", "--rx-port", "0", "--json-out", self.sink_json[name], "--hold",
                                 "--link-timeout", "30"], prefix)

    def start_gen(self, args, json_path, hold, quiet=False):
        p = self.place
        prefix = self.s.prefix("gen")
        ports = [self.t["tx"], self.t["rx"]]
        self.trials += 1
        return self.s.start("sluice-gen",
                            [self.bins.gen, *T.eal(prefix, p["gen_main"], p["gen_worker"], self.t["mem"], self._gen_devices(ports)),
                             "--", *args, "--tx-port", "0", "--rx-port", "1", "--json-out", json_path,
                             "--start-file", self.start_file, "--link-timeout", "30",
                             *(["--hold"] if hold else [])], prefix, quiet=quiet)

    def wait_sockets(self, names, owners):
        self.s.wait_until(lambda: all(self.sock[n].exists() for n in names), 30, owners,
                          "waiting for the memif server sockets")

    def wait_dut_ready(self, others):
        if self.testpmd:
            self.testpmd.ready()
            self.testpmd.start()
        else:
            self.s.wait_until(lambda: "[info] running" in self.dut.output(), 40, [self.dut, *others],
                              "waiting for sluice to start forwarding")

    def bring_up(self, first_gen):
        """Starts everything in the order memif wants (servers first), then releases the
        generator. first_gen() starts it and returns its Proc."""
        if self.t["role"] == "server":
            self.start_dut()
            self.wait_sockets(self.t["ports"], [self.dut])
            # A memif server turns away clients until its port is started: wait for that.
            if self.testpmd:
                self.testpmd.ready()
            else:
                self.s.wait_until(lambda: "mbufs available before start" in self.dut.output(), 30, [self.dut],
                                  "waiting for sluice to start its ports")
                time.sleep(0.1)
            self.start_sinks()
            gen = first_gen()
        else:
            self.start_sinks()
            gen = first_gen()
            self.wait_sockets([self.t["tx"], self.t["rx"], *self.t["sinks"]], [gen, *self.sinks.values()])
            self.start_dut()
        self.wait_dut_ready([gen, *self.sinks.values()])
        # Sinks say "running" once they have polled (their receive buffers are posted).
        self.s.wait_until(lambda: all("sluice-gen: running" in p.output() for p in self.sinks.values()), 30,
                          [self.dut, gen, *self.sinks.values()], "waiting for the sinks to receive")
        self.start_file.touch()
        return gen

    def watched(self):
        return [self.dut, *self.sinks.values()]

    def stop_sinks(self):
        """First signal: each sink stops receiving and writes its results (ports stay up)."""
        out = {}
        for name, proc in self.sinks.items():
            proc.signal(T.signal.SIGINT)
        for name, proc in self.sinks.items():
            self.s.wait_until(lambda: self.sink_json[name].exists(), 20, [proc], f"waiting for sink {name}'s results")
            out[name] = T.load_json(self.sink_json[name], f"sink {name}")
        return out

    def stop_dut(self):
        """sluice: SIGINT, its statistics; testpmd: stop (forward statistics), quit."""
        if self.testpmd:
            stats = self.testpmd.stop()
            self.testpmd.quit()
            return {"testpmd": stats}
        self.dut.signal(T.signal.SIGINT)
        if not self.dut.wait(30):
            raise T.Failure(f"sluice (pid {self.dut.pid}) did not stop within 30 s of SIGINT\n{self.dut.tail()}")
        if self.dut.returncode != 0:
            raise T.Failure(f"sluice {self.dut.exit_text()} at stop\n{self.dut.tail()}")
        return T.load_json(self.stats_path, "sluice --stats-out")


def trial_summary(g, rate):
    tx, rx = g.get("tx", {}), g.get("rx", {})
    attempted = tx.get("attempted", 0)
    secs = tx.get("seconds", 0) or 1e-9
    lost = rx.get("lost", attempted)
    return {
        "rate_pps": rate,
        "offered_pps": tx.get("offered_pps", 0),
        "sent": tx.get("sent", 0),
        "attempted": attempted,
        "refused": tx.get("dropped", 0),
        "skipped": tx.get("skipped", 0),
        "received": rx.get("unique", 0),
        "received_pps": rx.get("unique", 0) / secs,
        "lost": lost,
        "loss_ratio": lost / attempted if attempted else 1.0,
        "latency_ns": rx.get("latency_ns", {}),
        "duplicated": rx.get("duplicated", 0),
        "reordered": rx.get("reordered", 0),
    }


def fmt_trial(i, t, verdict=""):
    lat = t["latency_ns"]
    return (f"trial {i}: {t['rate_pps'] or 'unpaced':>9} pps -> offered {t['offered_pps']:,.0f}, "
            f"received {t['received_pps']:,.0f} pps, lost {t['lost']} ({t['loss_ratio'] * 100:.4f}%), "
            f"latency p50/p99/max {lat.get('p50', 0)}/{lat.get('p99', 0)}/{lat.get('max', 0)} ns"
            + (f", {t['skipped']} skipped by the late sender" if t.get("skipped") else "") + f" {verdict}")


# ---- the two modes ------------------------------------------------------------------------

def one_trial(scn, bins, session, args, seconds, announce=""):
    """Brings everything up, runs sluice-gen with args, and stops in the order that keeps
    every counter: sinks (results written, links up), the DUT (its statistics), then the
    generator, which holds its links until then. A DUT never sees a peer leave while its
    workers poll (net_memif's disconnect is not safe under traffic). Returns (topology,
    generator results, DUT statistics, sink results)."""
    topo = Topology(scn, bins, session)
    gen_json = topo.dir / "gen.json"
    gen = topo.bring_up(lambda: topo.start_gen(args, gen_json, hold=True, quiet=not announce))
    if announce:
        print(f"traffic-test: {announce} ({scn['topology']['dut']} pid {topo.dut.pid}, "
              f"sluice-gen pid {gen.pid})", flush=True)
    session.wait_until(lambda: gen_json.exists(), seconds + 60, [*topo.watched(), gen], "during the trial")
    gen_res = T.load_json(gen_json, "sluice-gen --json-out")
    if not gen_res.get("ok"):
        time.sleep(0.2)  # a peer's death is the likelier cause: name it first
        session.check_alive(topo.watched(), "during the trial")
        raise T.Failure(f"sluice-gen reported an error: {gen_res.get('error')}\n{gen.tail()}")
    sinks = topo.stop_sinks()
    dut_stats = topo.stop_dut()
    for name, p in [("sluice-gen", gen), *((f"sink {n}", p) for n, p in topo.sinks.items())]:
        p.signal(T.signal.SIGINT)
        p.wait(20)
        if p.returncode != 0:
            raise T.Failure(f"{name} {p.exit_text()} at stop\n{p.tail()}")
    return topo, gen_res, dut_stats, sinks


def run_trial(scn, bins, session, rate=None, duration=None):
    """One fixed-rate trial with a lossless sender; returns the report fields."""
    g = scn["generator"]
    rate = g.get("rate", 10000) if rate is None else rate
    duration = g.get("duration", 2) if duration is None else duration
    print(f"traffic-test: lcores: {T.placement_text(T.placement())}", flush=True)
    args = gen_args(g, rate, duration, g.get("retry", True))
    topo, gen_res, dut_stats, sinks = one_trial(scn, bins, session, args, duration,
                                                f"trial running: {rate} pps for {duration} s")
    t = trial_summary(gen_res, rate)
    print("traffic-test: " + fmt_trial(1, t), flush=True)
    return {"trials": [t], "gen": gen_res, "sluice": dut_stats, "sinks": sinks,
            "placement": T.placement_text(topo.place)}


def search_rate(trial, loss, resolution, confirm=1, final=None, final_tries=4, start=None, confirmed=None):
    """The search of run_search, apart from processes so that it can be tested alone.

    trial(rate) runs one trial (rate 0: unpaced) and returns its summary (trial_summary);
    final(rate), when given, runs the longer final trial at the found rate (else trial is
    used again). A trial passes when it lost at most `loss` (a ratio) and offered what it
    was asked (98%).

    Binary search between 0 and the unpaced offer, after CSIT's MLRsearch: a failing trial
    is repeated `confirm` times before it lowers the upper bound (one unlucky trial on a
    shared CPU does not floor the result: a rate fails only when every one of its 1 + confirm
    trials failed); a passing one raises the lower bound at once. The rate found must then pass
    a final trial (confirmed the same way); where it does not, that rate becomes the upper bound
    and the search goes on below it, at most `final_tries` times. Only a rate that passed its
    final trial is reported: when none did, rate_pps is 0 and unconfirmed_pps the last rate
    found (a short trial passed there, its final did not).

    start: (lo, lo_trial, hi, top) to go on from another search's bounds (the PDR search
    starts from the NDR's: a rate that lost nothing lost at most any tolerance), top being
    the unpaced trial. confirmed: (rate, its final trial) of a stricter search whose rate
    held through its final (the NDR's, for the PDR): the result is never below it, even when
    every final tried above it failed.

    Returns a dict: rate_pps, best (the trial that passed at that rate, the final one where
    there was one, or None), upper_bound_pps (the unpaced offer), limited_by ("dut" when the
    unpaced trial lost more than the tolerance, "generator" when it did not: then the DUT kept
    up with the most the generator offers and there is nothing to search), confirmed (failing
    trials repeated, and how many of those repeats passed), final_ok (the rate found passed its
    final trial), hi_pps (the lowest rate that failed, confirmed), unconfirmed_pps (see above;
    0 when the rate was confirmed)."""

    def passes(t, rate):
        return t["loss_ratio"] <= loss and (rate == 0 or t["offered_pps"] >= 0.98 * rate)

    stats = {"confirmations": 0, "overturned": 0}

    def judge(run, rate):
        """(passed, trial): a failure counts only once confirmed."""
        t = run(rate)
        if passes(t, rate):
            return True, t
        for _ in range(confirm):
            stats["confirmations"] += 1
            again = run(rate)
            if passes(again, rate):
                stats["overturned"] += 1
                return True, again
        return False, t

    if start is None:
        top = trial(0)  # unpaced: the most the generator offers through this DUT
        lo, best, hi = 0.0, None, top["offered_pps"]
    else:
        lo, best, hi, top = start
    upper = top["offered_pps"]

    def result(rate, t, limited_by, final_ok, unconfirmed=0.0):
        return {"rate_pps": rate, "best": t, "upper_bound_pps": upper, "limited_by": limited_by,
                "confirmations": stats["confirmations"], "overturned": stats["overturned"], "final_ok": final_ok,
                "hi_pps": hi, "unconfirmed_pps": unconfirmed}

    if passes(top, 0):
        return result(upper, top, "generator", True)
    passed = {}  # rate -> its passing trial (bisection steps), to step back to after a failed final trial
    if best is not None:
        passed[lo] = best
    if confirmed is not None and confirmed[1] is not None:
        passed.setdefault(confirmed[0], confirmed[1])
    for _ in range(final_tries):
        while hi - lo > resolution * hi:
            mid = round((lo + hi) / 2)
            ok, t = judge(trial, mid)
            if ok:
                lo, best = mid, t
                passed[mid] = t
            else:
                hi = mid
        if best is None:
            return result(0.0, None, "dut", False)
        # A rate that already passed its final trial (the NDR's, for the PDR) needs no other.
        ok, t = (True, best) if best.get("final") else judge(final or trial, lo)
        if ok:
            return result(lo, t, "dut", True)
        # The rate found did not hold through the final trial: it is the new upper bound.
        hi = lo
        below = [r for r in passed if r < hi]
        lo = max(below) if below else 0.0
        best = passed.get(lo)
    # Out of final trials. A rate that held through a final all the same (a stricter search's,
    # passed in as confirmed) is the result; else nothing held through one, so there is no rate
    # to report (a PDR search going on from here starts from its own passing trials, not from
    # this).
    held = [r for r, t in passed.items() if t.get("final")]
    if held:
        return result(max(held), passed[max(held)], "dut", True)
    return result(0.0, None, "dut", False, lo)


def run_search(scn, bins, session, trial_s, resolution, losses, latency_s=None, confirm=1, final_s=None):
    """NDR (loss 0) and/or PDR (loss > 0) by search_rate, one after the other (the PDR goes on
    from the NDR's bounds and trials); then latency at 50% of the first. Every trial starts
    the DUT and the generator afresh (see one_trial). final_s: the final trial's length
    (default 3 x trial_s)."""
    g = scn["generator"]
    trials = []
    print(f"traffic-test: lcores: {T.placement_text(T.placement())}", flush=True)
    final_s = final_s or 3 * trial_s

    def trial(rate, seconds=trial_s, note=None):
        # A search trial's sender does not make up for a stall of its own CPU (two vCPUs shared
        # with the DUT) in one burst at the port's full rate, which a DUT running near its
        # limit cannot take: beyond SEARCH_MAX_LAG_US the packets are skipped (not offered;
        # a trial whose offer falls short of 98% of the rate fails as before).
        args = gen_args(g, rate, seconds, retry=False) + ["--drain", "0.3"]
        if rate:
            args += ["--max-lag-us", str(g.get("max_lag_us", SEARCH_MAX_LAG_US))]
        _, res, _, _ = one_trial(scn, bins, session, args, seconds)
        t = trial_summary(res, rate)
        t["seconds"] = seconds
        trials.append(t)
        if note is None:
            verdicts = ", ".join(f"{kind(loss)} {'pass' if t['loss_ratio'] <= loss else 'fail'}" for loss in losses)
            note = "(unpaced: upper bound)" if rate == 0 else f"({'final, ' if seconds != trial_s else ''}{verdicts})"
        print("traffic-test: " + fmt_trial(len(trials), t, note), flush=True)
        return t

    def final(rate):
        t = trial(rate, final_s)
        t["final"] = True
        return t

    results, start, confirmed = {}, None, None
    for loss in sorted(losses):
        print(f"traffic-test: {kind(loss).upper()} search (loss <= {loss:g}), failing trials confirmed {confirm}x, "
              f"final trial {final_s:g} s", flush=True)
        r = search_rate(trial, loss, resolution, confirm, final, start=start, confirmed=confirmed)
        r["trials"] = len(trials)  # how many trials so far
        results[kind(loss)] = r
        top = trials[0]
        if r["limited_by"] == "generator":
            print("traffic-test: the unpaced trial passed: the generator, not the DUT, sets the rate", flush=True)
        # The next, more tolerant search starts from what this one's trials already say.
        nxt = [ls for ls in sorted(losses) if ls > loss]
        if nxt:
            start = bounds_from(trials, nxt[0], confirm, r, top)
            if r["final_ok"] and r["best"] is not None:
                confirmed = (r["rate_pps"], r["best"])
    first = results[kind(min(losses))]
    lat = None
    if first["best"] is not None:
        lat = trial(round(first["rate_pps"] / 2), latency_s or 2 * trial_s, "(latency at 50% of the result)")
    out = {}
    for name, r in results.items():
        loss = 0 if name == "ndr" else max(losses)
        out[name] = {"kind": name, "loss_tolerance": loss, "rate_pps": r["rate_pps"], "resolution": resolution,
                     "trial_s": trial_s, "final_s": final_s, "confirm": confirm, "upper_bound_pps": r["upper_bound_pps"],
                     "limited_by": r["limited_by"], "final_ok": r["final_ok"], "confirmations": r["confirmations"],
                     "overturned": r["overturned"], "trials": r["trials"], "unconfirmed_pps": r["unconfirmed_pps"]}
    res = dict(out[kind(min(losses))])
    res["latency_at_half"] = lat["latency_ns"] if lat else {}
    res["latency_rate_pps"] = lat["rate_pps"] if lat else 0
    for name, r in out.items():
        res[f"{name}_pps"] = r["rate_pps"]
    return {"trials": trials, "result": res, "results": out, "placement": T.placement_text(T.placement())}


def bounds_from(trials, loss, confirm, prev, top):
    """(lo, lo trial, hi, top) for a search at tolerance `loss` that goes on from an earlier,
    stricter one (prev, its result) and its trials: hi is the lowest rate where each of at
    least 1 + confirm trials lost more than `loss` (a confirmed failure), else the unpaced
    offer; lo the highest rate below hi that passed, at least prev's rate (0 when prev found no
    confirmed rate)."""
    def ok(t):
        return t["loss_ratio"] <= loss and t["offered_pps"] >= 0.98 * t["rate_pps"]

    paced = [t for t in trials if t["rate_pps"] > 0]
    by_rate = {}
    for t in paced:
        by_rate.setdefault(t["rate_pps"], []).append(t)
    failed = [r for r, ts in by_rate.items() if len(ts) >= 1 + confirm and not any(ok(t) for t in ts)]
    hi = min(failed, default=top["offered_pps"])
    lo, best = prev["rate_pps"], prev["best"]
    if prev["limited_by"] == "generator":
        return lo, best, hi, top
    for t in paced:
        if ok(t) and lo < t["rate_pps"] < hi:
            lo, best = t["rate_pps"], t
    return lo, best, hi, top


def kind(loss):
    return "ndr" if loss == 0 else "pdr"


# ---- report -------------------------------------------------------------------------------

def plot(report, path):
    """Offered vs received rate per trial, and latency percentiles against the offered rate."""
    import matplotlib  # noqa: PLC0415 (only when plotting)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    trials = sorted(report.get("trials", []), key=lambda t: t["offered_pps"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    off = [t["offered_pps"] / 1e6 for t in trials]
    a.plot(off, [t["received_pps"] / 1e6 for t in trials], "o-", label="received")
    if off:
        a.plot([0, max(off)], [0, max(off)], ":", color="grey", label="offered = received")
    res = report.get("result")
    if res and res.get("rate_pps"):
        a.axvline(res["rate_pps"] / 1e6, color="green", ls="--", label=f"{res['kind'].upper()} {res['rate_pps'] / 1e6:.3f} Mpps")
    a.set_xlabel("offered (Mpps)")
    a.set_ylabel("received (Mpps)")
    a.set_title("throughput")
    a.legend(fontsize=8)
    for key, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
        b.plot(off, [max(t["latency_ns"].get(key, 0), 1) / 1e3 for t in trials], "o-", label=label)
    b.set_yscale("log")
    b.set_xlabel("offered (Mpps)")
    b.set_ylabel("latency (µs)")
    b.set_title("latency through the DUT (send to receive)")
    b.legend(fontsize=8)
    fig.suptitle(f"{report['scenario']} ({report['mode']}, DUT {report['dut']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(path_or_scn, mode="trial", out=None, build=None, rate=None, duration=None, trial_s=None,
        resolution=None, loss=None, want_plot=True, confirm=None, final_s=None):
    """Runs a scenario; returns (exit code, report). 0 pass, 1 fail, 77 skipped."""
    scn = load(path_or_scn) if not isinstance(path_or_scn, dict) else check(path_or_scn, path_or_scn.get("name", "scenario"))
    out = Path(out or (T.ROOT / "build" / "traffic" / scn["name"]))
    out.mkdir(parents=True, exist_ok=True)
    report = {"scenario": scn["name"], "description": scn.get("description", ""), "mode": mode,
              "dut": scn["topology"]["dut"], "ok": False, "error": "", "expectations": []}
    session = None
    rc = 1
    try:
        bins = T.Binaries(build)
        procs = 2 + len(scn["topology"]["sinks"])
        T.require_hugepages(scn["topology"]["mem"] * procs + 64)
        session = T.Session(scn["name"], out / "logs")
        if mode == "trial":
            report.update(run_trial(scn, bins, session, rate, duration))
            ns = {"gen": report["gen"], "sluice": report["sluice"], "dut": report["sluice"], "sinks": report["sinks"],
                  "trial": report["trials"][0]}
        else:
            s = scn["search"]
            pdr_loss = loss if loss is not None else (s.get("loss") or 0.001)
            losses = {"ndr": [0], "pdr": [pdr_loss], "ndr+pdr": [0, pdr_loss]}[mode]
            report.update(run_search(scn, bins, session, trial_s or s.get("trial", 1),
                                     resolution or s.get("resolution", 0.05), losses,
                                     confirm=s.get("confirm", 1) if confirm is None else confirm,
                                     final_s=final_s or s.get("final")))
            ns = {"result": report["result"], "trials": report["trials"]}
        results = T.evaluate(scn.get("expect" if mode == "trial" else "expect_search", []), ns)
        report["expectations"] = [{"expect": e, "ok": ok, "detail": d} for e, ok, d in results]
        for e, ok, d in results:
            print(f"{'PASS' if ok else 'FAIL'}: {e}" + (f"\n      {d}" if d else ""), flush=True)
        report["ok"] = all(ok for _, ok, _ in results)
        rc = 0 if report["ok"] else 1
    except T.Skip as e:
        print(f"SKIPPED: {scn['name']}: {e}", flush=True)
        report["error"] = f"skipped: {e}"
        rc = 77
    except T.Failure as e:
        print(f"FAIL: {scn['name']}: {e}", flush=True)
        report["error"] = str(e)
        rc = 1
    except KeyboardInterrupt:
        print(f"FAIL: {scn['name']}: interrupted", flush=True)
        report["error"] = "interrupted"
        rc = 1
    finally:
        if session is not None:
            notes = session.teardown()
            left = session.leftovers()
            report["cleanup"] = {"notes": notes, "leftovers": left, "prefixes": session.prefixes}
            for n in notes:
                print(f"traffic-test: cleanup: {n}", flush=True)
            if left:
                print("FAIL: left behind: " + "; ".join(left), flush=True)
                report["ok"] = False
                rc = 1
            else:
                print(f"traffic-test: cleanup: no processes, sockets, hugepage files or runtime folders left "
                      f"(prefixes {', '.join(session.prefixes)})", flush=True)
        (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        if want_plot and report.get("trials"):
            try:
                plot(report, out / "report.png")
                print(f"traffic-test: report {out / 'report.json'}, plot {out / 'report.png'}", flush=True)
            except ImportError as e:
                print(f"traffic-test: no plot ({e}: install python3-matplotlib, tools/install-deps does)", flush=True)
        else:
            print(f"traffic-test: report {out / 'report.json'}", flush=True)
    return rc, report

