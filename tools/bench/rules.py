"""Rule sets for the benchmarks: N realistic IPv4 rules (prefixes, protocols, port ranges),
deterministic, plus one rule that the benchmark traffic hits, ranked in the middle."""
import random


def flows_yaml(n, to="out", seed=7):
    rng = random.Random(seed)
    lines = ["version: 1", "non_ip: { action: drop }", "default: { action: drop }", "rules:"]
    hit_at = n // 2
    for i in range(n):
        if i == hit_at:
            lines += [f"  - name: bench-hit", "    priority: 1000",
                      "    match: { proto: udp, src: 10.0.0.0/8, dst: 192.168.0.0/16, dst_port: 1024-65535 }",
                      f"    action: forward", f"    to: {to}"]
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
        lines += [f"  - name: r{i}", f"    priority: {rng.randrange(0, 2000)}",
                  f"    match: {{ proto: {proto}, src: {src}, dst: {dst}, dst_port: {lo}-{hi} }}",
                  f"    action: {action}"]
        if action == "forward":
            lines.append(f"    to: {to}")
    return "\n".join(lines) + "\n"
