#!/usr/bin/env python3
"""bench/redis_ops.py: Redis operations per /api/v1 request, per feature set,
on a standalone redis-server and on a 3-master Redis Cluster (issue 21).

Starts (on free loopback ports, all stopped at exit): a fixed-answer fake
OpenAI upstream (in this process), redis-server (standalone, or 3 cluster
nodes joined with `redis-cli --cluster create`), and the chatgate binary
(BIN, default target/release/chatgate) once per feature set. After a warm-up
it runs `redis-cli MONITOR` on every node, sends N sequential chat requests
over one keep-alive connection, and counts what the nodes saw: client
commands (round trips, by command) and the commands run inside Lua scripts
(`[0 lua]` lines; `INFO commandstats` counts both alike), summed over the
nodes. Anything chatgate does in the background (the canary poll) counts
too. Also chatgate's CPU per request, from /proc/<pid>/task/*/schedstat
(ns on CPU; noisy on a shared machine).

Usage: python3 bench/redis_ops.py [N]   (N requests per set, default 300)
Prints a Markdown table. Needs redis-server and redis-cli on PATH.
"""

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BIN", os.path.join(ROOT, "target/release/chatgate"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
WARMUP = 20
KEY = "bench-redis-ops-key"
COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Warm and sunny."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 31, "completion_tokens": 5, "total_tokens": 36},
}).encode()

PROCS = []
WORK = tempfile.mkdtemp(prefix="chatgate-redis-ops.")


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    shutil.rmtree(WORK, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn_out(args, out):
    p = subprocess.Popen(args, stdout=out, stderr=subprocess.DEVNULL)
    PROCS.append(p)
    return p


def spawn(args, **kw):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    PROCS.append(p)
    return p


def until(check, what, limit=30.0):
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {what}")
        time.sleep(0.05)


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(COMPLETION)))
        self.end_headers()
        self.wfile.write(COMPLETION)

    def log_message(self, *args):
        pass


def cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                         check=False)
    return out.stdout


def ping(port):
    return cli(port, "PING").strip() == "PONG"


def start_redis(mode):
    """Ports of the masters (1 standalone, or 3 cluster nodes)."""
    ports = [free_port() for _ in range(1 if mode == "standalone" else 3)]
    for i, port in enumerate(ports):
        d = os.path.join(WORK, f"{mode}-{i}")
        os.mkdir(d)
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", d]
        if mode == "cluster":
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        spawn(args)
    for port in ports:
        until(lambda p=port: ping(p), "redis-server up")
    if mode == "cluster":
        subprocess.run(["redis-cli", "--cluster", "create",
                        *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                        "--cluster-yes"], capture_output=True, check=True)
        until(lambda: all("cluster_state:ok" in cli(p, "CLUSTER", "INFO") for p in ports),
              "cluster ok")
    return ports


SETS = [
    # (name, extra config, body varies per request)
    ("rate limits (per IP + per key)", "", False),
    ("+ budgets (key + gateway spend)", "budgets", False),
    ("+ response cache, miss", "budgets,cache", True),
    ("+ response cache, hit", "budgets,cache", False),
    ("+ canary (10 %)", "budgets,cache,canary", False),
]


def config(up_port, cg_port, features):
    budgets = "budgets" in features
    toml = f"""
[server]
host = "127.0.0.1"
port = {cg_port}

[auth]
enabled = true
[auth.keys.bench]
env = "BENCH_KEY"
requests_per_minute = 60000000
burst = 1000000
{"usd_per_day = 1000000.0" if budgets else ""}

[rate_limit]
per_ip_requests_per_minute = 60000000
per_ip_burst = 1000000

[logging]
level = "warn"

[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:{up_port}/v1"
api_key_env = "BENCH_UPSTREAM_KEY"
[providers.up.prices]
"gpt-4o-mini" = {{ input = 1.0, output = 2.0 }}

[models.default]
targets = ["up:gpt-4o-mini"]
{'cache_ttl = "10m"' if "cache" in features else ""}
{'[models.default.canary]' + chr(10) + 'targets = ["up:gpt-4o-mini"]' + chr(10) + 'percent = 10.0'
 if "canary" in features else ""}

[state]
backend = "redis"
"""
    if budgets:
        toml += "\n[budgets]\nusd_per_day = 1000000.0\n"
    return toml


def cpu_ns(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def monitor(ports):
    """One `redis-cli MONITOR` per node, writing to a file each."""
    watchers = []
    for port in ports:
        path = os.path.join(WORK, f"monitor-{port}-{time.monotonic_ns()}.txt")
        out = open(path, "w")
        watchers.append((port, path, out, spawn_out(["redis-cli", "-p", str(port), "MONITOR"], out)))
    # MONITOR is on once it has echoed a command sent after it started.
    for port, path, _, _ in watchers:
        until(lambda p=port, f=path: cli(p, "ECHO", "redis-ops-start") and
              "redis-ops-start" in open(f).read(), "MONITOR on")
    return watchers


def tally(watchers):
    """Client commands (round trips) and commands run inside scripts, by
    name, between the start and end markers, summed over the nodes."""
    trips, inner = {}, {}
    for port, path, out, proc in watchers:
        cli(port, "ECHO", "redis-ops-end")
        until(lambda f=path: "redis-ops-end" in open(f).read(), "MONITOR drained")
        proc.terminate()
        proc.wait(5)
        PROCS.remove(proc)
        out.close()
        text = open(path).read()
        text = text[text.rindex("redis-ops-start"):text.index("redis-ops-end")]
        for line in text.splitlines()[1:]:
            # 1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" "…" …  ([0 lua] inside a script)
            if "] \"" not in line:
                continue
            source, rest = line.split("] ", 1)
            name = rest.split(" ", 1)[0].strip('"').upper()
            if name == "ECHO":
                continue
            into = inner if source.endswith("lua") else trips
            into[name] = into.get(name, 0) + 1
    return trips, inner


def run_set(mode, ports, up_port, name, features, vary):
    for port in ports:
        cli(port, "FLUSHALL")
    cg_port = free_port()
    cdir = os.path.join(WORK, f"config-{cg_port}")
    os.mkdir(cdir)
    with open(os.path.join(cdir, "default.toml"), "w") as f:
        f.write(config(up_port, cg_port, features))
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    env.update(APP_ENV="development", CHATGATE_CONFIG_DIR=cdir, BENCH_KEY=KEY,
               BENCH_UPSTREAM_KEY="sk-fake",
               CHATGATE_REDIS_URL=",".join(f"redis://127.0.0.1:{p}" for p in ports),
               CHATGATE_STATE__REDIS_MODE=mode)
    cg = spawn([BIN], env=env)

    def ready():
        try:
            c = http.client.HTTPConnection("127.0.0.1", cg_port, timeout=1)
            c.request("GET", "/health/ready")
            body = json.loads(c.getresponse().read() or b"{}")
            return body.get("degraded") is None and body.get("status") == "ready"
        except (OSError, ValueError):
            return False

    until(ready, "chatgate ready on redis")
    conn = http.client.HTTPConnection("127.0.0.1", cg_port, timeout=10)
    seq = [0]

    def send():
        seq[0] += 1
        text = f"Weather in Lisbon in May? #{seq[0]}" if vary else "Weather in Lisbon in May?"
        body = json.dumps({"model": "default", "messages": [{"role": "user", "content": text}],
                           "user": f"user-{seq[0] % 50}"})
        conn.request("POST", "/api/v1/chat/completions", body,
                     {"authorization": f"Bearer {KEY}", "content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"{name}: HTTP {r.status}")
        return r.getheader("x-chatgate-cache")

    for _ in range(WARMUP):
        send()
    watchers = monitor(ports)
    t0, c0 = time.monotonic(), cpu_ns(cg.pid)
    hits = sum(1 for _ in range(N) if send() == "hit")
    c1, t1 = cpu_ns(cg.pid), time.monotonic()
    trips, inner = tally(watchers)
    cg.terminate()
    cg.wait(10)
    PROCS.remove(cg)
    return {
        "mode": mode, "set": name, "hits": hits,
        "trips": {k: v / N for k, v in sorted(trips.items())},
        "inner": sum(inner.values()) / N,
        "total": sum(trips.values()) / N,
        "cpu_ms": (c1 - c0) / 1e6 / N,
        "seconds": t1 - t0,
    }


def main():
    if not os.access(BIN, os.X_OK):
        raise SystemExit(f"no binary at {BIN}: cargo build --release (or BIN=...)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    up = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=up.serve_forever, daemon=True).start()
    up_port = up.server_address[1]
    rows = []
    try:
        for mode in ("standalone", "cluster"):
            ports = start_redis(mode)
            for name, features, vary in SETS:
                row = run_set(mode, ports, up_port, name, features, vary)
                print(json.dumps(row), file=sys.stderr)
                rows.append(row)
    finally:
        cleanup()
    print(f"N = {N} sequential requests per row, after {WARMUP} warm-up requests.\n")
    print("| redis | features | round trips / request (by command) | total | commands run in scripts / request | chatgate CPU ms / request |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        by = ", ".join(f"{k} {v:.2f}" for k, v in r["trips"].items() if v >= 0.005)
        hit = f" ({r['hits']}/{N} hits)" if "hit" in r["set"] or "canary" in r["set"] else ""
        print(f"| {r['mode']} | {r['set']}{hit} | {by} | {r['total']:.2f} | {r['inner']:.2f} | {r['cpu_ms']:.3f} |")


if __name__ == "__main__":
    main()
