#!/usr/bin/env python3
"""The NDR/PDR binary search (tools/traffic/scenario.py search_rate) against simulated DUTs:
no processes, no hugepages. A DUT with capacity C loses what is offered above C; the
generator offers at most G. The search must find the largest passing rate within its
resolution, never report a rate that failed, and say what limited it."""
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "traffic"))
import scenario  # noqa: E402

results = []


def check(what, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'}: {what}" + (f"\n      {detail}" if not ok and detail else ""))


def simulated(capacity, generator, tolerance=0.0, short_by=0.0):
    """trial(rate) of a DUT that forwards `capacity` pps and drops tolerance-free above it; the
    generator reaches `generator` pps unpaced and offers `short_by` less than it is asked."""
    trials = []

    def trial(rate):
        offered = generator if rate == 0 else min(rate * (1 - short_by), generator)
        lost = max(0.0, offered - capacity * (1 + tolerance))
        t = {"rate_pps": rate, "offered_pps": offered, "lost": lost, "loss_ratio": lost / offered}
        trials.append(t)
        return t

    return trial, trials


def main():
    for cap, gen, res in [(1e6, 4e6, 0.01), (3.9e6, 4e6, 0.01), (1.23e5, 1e7, 0.05), (2e6, 2.5e6, 0.1)]:
        trial, trials = simulated(cap, gen)
        rate, best, upper, limit = scenario.search_rate(trial, 0.0, res)
        name = f"capacity {cap:,.0f} pps, generator {gen:,.0f} pps, resolution {res}"
        check(f"{name}: limited by the DUT", limit == "dut", limit)
        check(f"{name}: upper bound is the unpaced offer", upper == gen, upper)
        check(f"{name}: the rate passes (at most the capacity)", 0 < rate <= cap, rate)
        check(f"{name}: within the resolution of the capacity", cap - rate <= res * cap + 1, f"{rate} vs {cap}")
        check(f"{name}: the best trial is the reported rate, lossless",
              best is not None and best["rate_pps"] == rate and best["lost"] == 0, best)
        bound = 2 + math.ceil(math.log2(gen / (res * cap)))  # unpaced + halvings to the resolution
        check(f"{name}: a binary search, not a scan (<= {bound} trials)", 3 <= len(trials) <= bound, len(trials))

    trial, trials = simulated(5e6, 4e6)
    rate, best, upper, limit = scenario.search_rate(trial, 0.0, 0.01)
    check("DUT faster than the generator: limited by the generator", limit == "generator", limit)
    check("DUT faster than the generator: one trial, rate = the unpaced offer",
          len(trials) == 1 and rate == upper == 4e6 and best is trials[0], (rate, upper, trials))

    trial, trials = simulated(1e9, 4e6, short_by=0.05)  # asked rates never reached
    rate, best, upper, limit = scenario.search_rate(trial, 0.0, 0.01)
    check("a DUT that loses nothing unpaced is generator-limited even if paced rates fall short",
          limit == "generator" and rate == 4e6, (rate, limit))

    def lossy_unpaced(rate):  # the generator falls short of every paced rate: nothing passes
        return {"rate_pps": rate, "offered_pps": 1e6 if rate == 0 else rate * 0.9, "lost": 10 if rate == 0 else 0,
                "loss_ratio": 1e-5 if rate == 0 else 0.0}
    rate, best, upper, limit = scenario.search_rate(lossy_unpaced, 0.0, 0.05)
    check("no rate reached as asked: no result (rate 0, no best trial)", rate == 0 and best is None, (rate, best))

    trial, trials = simulated(1e6, 4e6, tolerance=0.001)  # PDR: the DUT loses 0.1% above capacity
    rate, best, upper, limit = scenario.search_rate(trial, 0.001, 0.01)
    check("PDR: a loss within the tolerance passes", best is not None and best["loss_ratio"] <= 0.001 and rate > 0,
          (rate, best))

    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
