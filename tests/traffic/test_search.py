#!/usr/bin/env python3
"""The NDR/PDR search (tools/traffic/scenario.py search_rate) against simulated DUTs: no
processes, no hugepages. A DUT with capacity C loses what is offered above C; the generator
offers at most G. The search must find the largest passing rate within its resolution, never
report a rate that failed its final trial, and say what limited it. On a shared CPU a trial
can fail at any rate (an unlucky preemption): the search confirms a failure before it lowers
its upper bound, so one unlucky trial does not floor the result, and a lucky pass above the
capacity does not survive the longer final trial."""
import math
import os
import random
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "traffic"))
import scenario  # noqa: E402

results = []


def check(what, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'}: {what}" + (f"\n      {detail}" if not ok and detail else ""))


def simulated(capacity, generator, tolerance=0.0, short_by=0.0, unlucky=0.0, lucky=0.0, rng=None):
    """trial(rate) of a DUT that forwards `capacity` pps and loses what is offered above it
    (beyond `tolerance`); the generator reaches `generator` pps unpaced and offers `short_by`
    less than it is asked. With probability `unlucky` a paced trial loses packets anyway (the
    shared CPU); with probability `lucky` a short trial up to 5% above the capacity loses
    nothing (the DUT's rings absorb it); a long (final) trial is never lucky."""
    trials = []

    def trial(rate, long=False):
        offered = generator if rate == 0 else min(rate * (1 - short_by), generator)
        lost = max(0.0, offered - capacity * (1 + tolerance))
        if rate and lost and not long and offered <= 1.05 * capacity and rng and rng.random() < lucky:
            lost = 0.0
        if rate and not lost and rng and rng.random() < unlucky:
            lost = 0.01 * offered
        t = {"rate_pps": rate, "offered_pps": offered, "lost": lost, "loss_ratio": lost / offered, "long": long,
             "final": long}
        trials.append(t)
        return t

    return trial, trials


def final_of(trial):
    return lambda rate: trial(rate, long=True)


def deterministic():
    for cap, gen, res in [(1e6, 4e6, 0.01), (3.9e6, 4e6, 0.01), (1.23e5, 1e7, 0.05), (2e6, 2.5e6, 0.1)]:
        trial, trials = simulated(cap, gen)
        r = scenario.search_rate(trial, 0.0, res, final=final_of(trial))
        rate, best = r["rate_pps"], r["best"]
        name = f"capacity {cap:,.0f} pps, generator {gen:,.0f} pps, resolution {res}"
        check(f"{name}: limited by the DUT", r["limited_by"] == "dut", r)
        check(f"{name}: upper bound is the unpaced offer", r["upper_bound_pps"] == gen, r)
        check(f"{name}: the rate passes (at most the capacity)", 0 < rate <= cap, rate)
        check(f"{name}: within the resolution of the capacity", cap - rate <= res * cap + 1,
              f"{rate} vs {cap}")
        check(f"{name}: the reported trial is the final one, lossless, at the rate",
              best is not None and best["long"] and best["rate_pps"] == rate and best["lost"] == 0 and r["final_ok"],
              best)
        fails = sum(1 for t in trials if t["lost"] and t["rate_pps"])
        check(f"{name}: each failing rate confirmed once (every paced failure has a twin)",
              r["confirmations"] == fails // 2 and fails % 2 == 0 and r["overturned"] == 0, (r, fails))
        # unpaced + halvings to the resolution (each failing one twice) + the final trial
        halvings = 1 + math.ceil(math.log2(gen / (res * cap)))
        check(f"{name}: a binary search, not a scan", 3 <= len(trials) <= 2 + 2 * halvings + 1, len(trials))

    trial, trials = simulated(5e6, 4e6)
    r = scenario.search_rate(trial, 0.0, 0.01)
    check("DUT faster than the generator: limited by the generator", r["limited_by"] == "generator", r)
    check("DUT faster than the generator: one trial, rate = the unpaced offer",
          len(trials) == 1 and r["rate_pps"] == r["upper_bound_pps"] == 4e6 and r["best"] is trials[0], (r, trials))

    trial, trials = simulated(1e9, 4e6, short_by=0.05)  # asked rates never reached
    r = scenario.search_rate(trial, 0.0, 0.01)
    check("a DUT that loses nothing unpaced is generator-limited even if paced rates fall short",
          r["limited_by"] == "generator" and r["rate_pps"] == 4e6, r)

    def lossy_unpaced(rate):  # the generator falls short of every paced rate: nothing passes
        return {"rate_pps": rate, "offered_pps": 1e6 if rate == 0 else rate * 0.9, "lost": 10 if rate == 0 else 0,
                "loss_ratio": 1e-5 if rate == 0 else 0.0}
    r = scenario.search_rate(lossy_unpaced, 0.0, 0.05)
    check("no rate reached as asked: no result (rate 0, no best trial)", r["rate_pps"] == 0 and r["best"] is None, r)

    trial, trials = simulated(1e6, 4e6, tolerance=0.001)  # PDR: the DUT loses 0.1% above capacity
    r = scenario.search_rate(trial, 0.001, 0.01)
    check("PDR: a loss within the tolerance passes",
          r["best"] is not None and r["best"]["loss_ratio"] <= 0.001 and r["rate_pps"] > 0, r)

    # PDR going on from the NDR's bounds and trials: it starts at the NDR, never below it, and
    # takes the confirmed failures of the NDR search as its upper bound.
    trial, trials = simulated(1e6, 4e6, tolerance=0.05)
    ndr = scenario.search_rate(trial, 0.0, 0.01, final=final_of(trial))
    n = len(trials)
    pdr = scenario.search_rate(trial, 0.06, 0.01, final=final_of(trial),
                               start=scenario.bounds_from(trials, 0.06, 1, ndr, trials[0]))
    most = 1.05e6 / 0.94  # where 6% of the offer is lost
    check("PDR from the NDR: at least the NDR, near the capacity with its tolerance, no second unpaced trial",
          ndr["rate_pps"] <= pdr["rate_pps"] <= most and pdr["rate_pps"] >= 0.99 * most and
          all(t["rate_pps"] for t in trials[n:]), (ndr["rate_pps"], pdr["rate_pps"]))
    lo, _, hi, _ = scenario.bounds_from(trials[:n], 0.06, 1, ndr, trials[0])
    check("PDR from the NDR: the NDR search's confirmed failures above the PDR bound it (no restart from the top)",
          most <= hi < 4e6 and lo >= ndr["rate_pps"], (lo, hi))

    # A PDR equal to the NDR, whose rate already passed its final trial, costs no trial at all.
    trial, trials = simulated(1e6, 4e6)
    ndr = scenario.search_rate(trial, 0.0, 0.01, final=final_of(trial))
    n = len(trials)
    pdr = scenario.search_rate(trial, 0.001, 0.01, final=final_of(trial),
                               start=scenario.bounds_from(trials, 0.001, 1, ndr, trials[0]))
    check("PDR = NDR when nothing is lost above the capacity's edge: no new trial",
          pdr["rate_pps"] == ndr["rate_pps"] and len(trials) == n and pdr["final_ok"], (ndr, pdr, len(trials) - n))


def pdr_finals_fail():
    """A PDR search whose every final above the NDR loses more than its tolerance (a CI run:
    NDR 1.81 Mpps confirmed, PDR 0): the NDR's rate held through its final with no loss, so the
    PDR is at least that, confirmed, whatever the finals above it did."""
    trial, trials = simulated(1e6, 4e6, tolerance=0.05)
    ndr = scenario.search_rate(trial, 0.0, 0.01, final=final_of(trial))
    n = len(trials)

    def final(rate):
        t = trial(rate, long=True)
        if rate > ndr["rate_pps"]:
            t["lost"], t["loss_ratio"] = 0.07 * t["offered_pps"], 0.07
        return t
    pdr = scenario.search_rate(trial, 0.06, 0.01, final=final,
                               start=scenario.bounds_from(trials, 0.06, 1, ndr, trials[0]),
                               confirmed=(ndr["rate_pps"], ndr["best"]))
    finals = [t for t in trials[n:] if t["long"]]
    check("PDR whose finals above the NDR all fail: it tried them (4 tries, each confirmed)",
          len(finals) == 4 * 2 and all(t["rate_pps"] > ndr["rate_pps"] for t in finals), len(finals))
    check("PDR whose finals above the NDR all fail: the NDR's confirmed rate, not 0",
          ndr["final_ok"] and pdr["final_ok"] and pdr["rate_pps"] == ndr["rate_pps"] > 0,
          (ndr["rate_pps"], pdr))


def unconfirmed():
    """A DUT whose short trials pass below its capacity but whose long (final) trials always
    lose: no rate is confirmed, so none is reported, and a PDR search going on from that NDR
    is not floored by the NDR's unconfirmed rate."""
    trial, trials = simulated(1e6, 4e6)

    def final(rate):
        t = trial(rate, long=True)
        t["lost"], t["loss_ratio"] = 0.002 * t["offered_pps"], 0.002  # 0.2% lost in every final
        return t
    ndr = scenario.search_rate(trial, 0.0, 0.01, final=final)
    check("no final trial passes: NDR 0, not confirmed, the rate it last tried kept apart",
          ndr["rate_pps"] == 0 and ndr["best"] is None and not ndr["final_ok"] and 0 < ndr["unconfirmed_pps"] <= 1e6,
          ndr)
    finals = [t for t in trials if t["long"]]
    check("no final trial passes: the search stepped down through its final tries, then stopped",
          len(finals) == 4 * 2, len(finals))  # 4 tries, each failure confirmed once
    # A PDR tolerance the finals do not meet either: no PDR is confirmed, and none is reported
    # below the NDR (as when the PDR's own final tries stepped down past an unconfirmed NDR).
    n = len(trials)
    strict = scenario.search_rate(trial, 0.001, 0.01, final=final,
                                  start=scenario.bounds_from(trials[:n], 0.001, 1, ndr, trials[0]))
    check("PDR from an unconfirmed NDR, finals failing: not confirmed, and not below the NDR",
          not strict["final_ok"] and strict["rate_pps"] == 0 and strict["rate_pps"] >= ndr["rate_pps"],
          (ndr["rate_pps"], strict))
    # A PDR tolerance the finals meet: the PDR is found and confirmed.
    pdr = scenario.search_rate(trial, 0.003, 0.01, final=final,
                               start=scenario.bounds_from(trials[:n], 0.003, 1, ndr, trials[0]))
    check("PDR from an unconfirmed NDR: found and confirmed at a tolerance the finals meet",
          pdr["final_ok"] and 0.98e6 <= pdr["rate_pps"] <= 1e6 and pdr["unconfirmed_pps"] == 0, pdr)


def noisy():
    """Seeded, so the verdict is the same every run. 10% or 20% of trials are unlucky; 30% of
    short trials just above the capacity are lucky."""
    cap, gen, res, runs = 1e6, 4e6, 0.02, 300
    for label, unlucky, lucky, need in (("10% unlucky trials", 0.10, 0.0, 0.98),
                                        ("10% unlucky and lucky trials", 0.10, 0.3, 0.98),
                                        ("20% unlucky and lucky trials", 0.20, 0.3, 0.95)):
        rates, above, within = [], 0, 0
        for seed in range(runs):
            trial, trials = simulated(cap, gen, unlucky=unlucky, lucky=lucky, rng=random.Random(seed))
            r = scenario.search_rate(trial, 0.0, res, final=final_of(trial))
            rates.append(r["rate_pps"])
            above += r["rate_pps"] > cap
            within += cap - r["rate_pps"] <= 2 * res * cap
        share = within / runs
        # Without the confirmation one unlucky trial below the capacity lowers the upper bound
        # for good unless the final trial happens to catch it: 91% (10% unlucky) and 74% (20%)
        # of these searches end within 2 resolutions. With it a rate fails by bad luck only
        # twice in a row: 100% and 98%.
        check(f"{label}: >= {need:.0%} of {runs} searches end within 2 resolutions of the capacity",
              share >= need, f"{share:.0%}; median {statistics.median(rates):,.0f}, min {min(rates):,.0f}")
        check(f"{label}: the median search is within 1 resolution", cap - statistics.median(rates) <= res * cap,
              statistics.median(rates))
        check(f"{label}: no search reports a rate above the capacity (the final trial)", above == 0, above)


def main():
    deterministic()
    pdr_finals_fail()
    unconfirmed()
    noisy()
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
