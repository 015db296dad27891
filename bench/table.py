#!/usr/bin/env python3
"""The headline table of a bench/run.sh report: one row per target, each
figure beside its ratio to bare nginx proxy_pass measured in the same run
(issue 20's targets are such ratios), from the TSVs that run.sh writes.

Usage: table.py LOAD_TSV OPENLOOP_TSV STREAM_TSV
"added" = the target's latency minus nginx-direct's (the upstream called
directly) under the same load, so it is what the hop through the target adds.
"""
import csv
import sys

REFERENCE = "nginx-proxy"
ORDER = ["nginx-proxy", "chatgate", "chatgate-features", "chatgate-cache-hit",
         "chatgate-spend", "chatgate-redis", "portkey", "litellm"]


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def main():
    load, openloop, streams = (rows(p) for p in sys.argv[1:4])
    # A row that answered nothing (a peer still busy with the warm-up's
    # backlog in a --quick run) has no figures, only a CPU total: left out.
    by = {(r["target"], int(r["conc"])): r for r in load if int(r["requests"]) > 0}
    opened = {r["target"]: r for r in openloop if int(r["requests"]) > 0}
    stream = {r["target"]: r for r in streams}

    def cpu(t, c):
        r = by.get((t, c))
        return float(r["cpu_ms_per_req"]) if r else None

    def added(table, t, key):
        """The target's figure minus nginx-direct's, in ms."""
        r, b = table.get(t), table.get("nginx-direct")
        return (float(r[key]) - float(b[key])) / 1000 if r and b else None

    def added_p50(t, c):
        r, b = by.get((t, c)), by.get(("nginx-direct", c))
        return (float(r["p50_us"]) - float(b["p50_us"])) / 1000 if r and b else None

    def ttfb(t):
        return added(stream, t, "ttfb_p50_us")

    def stream_cpu(t):
        r = stream.get(t)
        return float(r["cpu_ms_per_stream"]) if r else None

    def open_p99(t):
        return added(opened, t, "p99_us")

    def saturated(t):
        r = opened.get(t)
        return r and float(r["achieved_rps"]) < 0.95 * float(r["offered_rps"])

    def fmt(v, digits=3):
        return "-" if v is None else f"{v:.{digits}f}"

    def ratio(v, ref):
        if v is None or ref is None or ref <= 0:
            return "-"
        return f"{v / ref:.2f}×"

    print("| target | req/s c=50 | CPU ms/req c=50 | ×proxy | CPU ms/req c=1 | ×proxy "
          "| added p50 c=1 ms | ×proxy | open-loop added p99 ms | stream added TTFB ms | ×proxy "
          "| CPU ms/stream | ×proxy |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    ref = REFERENCE
    for t in ORDER:
        if not any(k[0] == t for k in by) and t not in stream and t not in opened:
            continue
        r50 = by.get((t, 50))
        p99 = fmt(open_p99(t))
        if saturated(t):
            p99 += f" (saturated: {float(opened[t]['achieved_rps']):.0f}/s)"
        print(f"| {t} | {r50['rps'] if r50 else '-'} "
              f"| {fmt(cpu(t, 50), 4)} | {ratio(cpu(t, 50), cpu(ref, 50))} "
              f"| {fmt(cpu(t, 1), 4)} | {ratio(cpu(t, 1), cpu(ref, 1))} "
              f"| {fmt(added_p50(t, 1))} | {ratio(added_p50(t, 1), added_p50(ref, 1))} "
              f"| {p99} "
              f"| {fmt(ttfb(t))} | {ratio(ttfb(t), ttfb(ref))} "
              f"| {fmt(stream_cpu(t), 4)} | {ratio(stream_cpu(t), stream_cpu(ref))} |")

    # Issue 20 target 4 compares chatgate's rows with each other, not with nginx.
    plain, feats, hit = cpu("chatgate", 50), cpu("chatgate-features", 50), cpu("chatgate-cache-hit", 50)
    spend, redis = cpu("chatgate-spend", 50), cpu("chatgate-redis", 50)
    print()
    if plain and feats:
        print(f"- CPU per request at c=50, features on (cache miss) ÷ plain chatgate: {feats / plain:.2f}×")
    if plain and hit:
        print(f"- CPU per request at c=50, cache hit ÷ plain chatgate: {hit / plain:.2f}×")
    if spend and redis:
        print(f"- CPU per request at c=50 in chatgate, Redis backend − memory backend (both with spend): "
              f"{redis - spend:+.4f} ms")


if __name__ == "__main__":
    main()
