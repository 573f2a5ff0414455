"""Rule sets for the benchmarks: N realistic IPv4 rules (prefixes, protocols, port ranges),
deterministic, plus one rule that the benchmark traffic hits, ranked in the middle.
rule_list() is the set; flows_yaml() renders it for sluice, acl_rules() for dpdk-test-acl."""
import random

PROTO = {"tcp": 6, "udp": 17}


def rule_list(n, to="out", seed=7):
    """[{name, priority, proto, src, dst, dport: (lo, hi), action, to}] in file order."""
    rng = random.Random(seed)
    out = []
    hit_at = n // 2
    for i in range(n):
        if i == hit_at:
            out.append({"name": "bench-hit", "priority": 1000, "proto": "udp", "src": "10.0.0.0/8",
                        "dst": "192.168.0.0/16", "dport": (1024, 65535), "action": "forward", "to": to})
            continue
        plen_s, plen_d = rng.choice([8, 16, 24, 32]), rng.choice([16, 24, 32])
        src = f"{rng.randrange(11, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.0"
        dst = f"{rng.randrange(11, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.0"
        src = ".".join(src.split(".")[:plen_s // 8] + ["0"] * (4 - plen_s // 8)) + f"/{plen_s}"
        dst = ".".join(dst.split(".")[:plen_d // 8] + ["0"] * (4 - plen_d // 8)) + f"/{plen_d}"
        proto = rng.choice(["tcp", "udp"])
        lo = rng.randrange(1, 60000)
        hi = lo + rng.choice([0, 0, 10, 1000])
        action = rng.choice(["drop", "forward"])
        out.append({"name": f"r{i}", "priority": rng.randrange(0, 2000), "proto": proto, "src": src, "dst": dst,
                    "dport": (lo, hi), "action": action, "to": to if action == "forward" else None})
    return out


def flows_yaml(n, to="out", seed=7, rules=None):
    rules = rule_list(n, to, seed) if rules is None else rules
    lines = ["version: 1", "non_ip: { action: drop }", "default: { action: drop }", "rules:"]
    for r in rules:
        lo, hi = r["dport"]
        if r["name"] == "bench-hit":
            lines += [f"  - name: bench-hit", "    priority: 1000",
                      f"    match: {{ proto: {r['proto']}, src: {r['src']}, dst: {r['dst']}, dst_port: {lo}-{hi} }}",
                      f"    action: forward", f"    to: {r['to']}"]
            continue
        lines += [f"  - name: {r['name']}", f"    priority: {r['priority']}",
                  f"    match: {{ proto: {r['proto']}, src: {r['src']}, dst: {r['dst']}, dst_port: {lo}-{hi} }}",
                  f"    action: {r['action']}"]
        if r["to"]:
            lines.append(f"    to: {r['to']}")
    return "\n".join(lines) + "\n"


def rank_order(rules):
    """sluice's semantics (higher priority wins, then earlier in the file) as a first-match order."""
    return sorted(range(len(rules)), key=lambda i: -rules[i]["priority"])


def acl_rules(rules):
    """dpdk-test-acl's ClassBench format, first match wins: the rules in rank order."""
    lines = []
    for i in rank_order(rules):
        r = rules[i]
        lo, hi = r["dport"]
        lines.append(f"@{r['src']} {r['dst']} 0 : 65535 {lo} : {hi} {PROTO[r['proto']]}/0xff")
    return "\n".join(lines) + "\n"
