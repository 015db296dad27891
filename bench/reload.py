#!/usr/bin/env python3
"""Start-up and live reload cost: the time from spawning chatgate to its
first answered chat request (10 fresh starts), the time from SIGHUP to the
first request served by the new config, and the latency of requests running
while reloads happen.

Usage: bench/reload.py [path/to/chatgate]   (default target/debug/chatgate)
Starts chatgate on a free port with the mock provider, in a temp dir; stops
only the processes it started. Prints a markdown table.
"""
import json, os, signal, statistics, subprocess, sys, tempfile, threading, time
import urllib.request, urllib.error

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/chatgate"
KEY = "bench-key"
RELOADS = 20
STARTS = 10
POLL_PAUSE = 0.0005  # between refused connects: 0.5 ms of resolution for start-up
BASE = """
[server]
port = {port}
[auth.keys.bench]
env = "BENCH_KEY"
[rate_limit]
per_ip_requests_per_minute = 1000000
per_ip_burst = 1000000
"""


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def chat(port, model):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/chat",
        data=json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def spawn():
    """chatgate on a fresh port and config dir: (process, port, config path, base config)."""
    port = free_port()
    d = tempfile.mkdtemp()
    cfg = os.path.join(d, "default.toml")
    base = BASE.format(port=port)
    open(cfg, "w").write(base)
    env = {"PATH": os.environ["PATH"], "CHATGATE_CONFIG_DIR": d, "BENCH_KEY": KEY,
           "CHATGATE_LOGGING__LEVEL": "warn"}
    proc = subprocess.Popen([os.path.abspath(BIN)], cwd=d, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port, cfg, base


def first_answer(proc, port, poll):
    """Polls a chat request until it answers 200 (bounded: 30 s); ms since `poll` started."""
    deadline = time.time() + 30
    while time.time() < deadline and proc.poll() is None:
        try:
            if chat(port, "default") == 200:
                return (time.perf_counter() - poll) * 1000
        except OSError:
            time.sleep(POLL_PAUSE)
    raise SystemExit("chatgate did not answer within 30 s")


def stop(proc):
    proc.terminate()
    proc.wait(timeout=30)


def main():
    # 0. Spawn -> first 200: STARTS fresh processes, one at a time.
    starts = []
    for _ in range(STARTS):
        t0 = time.perf_counter()
        p, p_port, _, _ = spawn()
        try:
            starts.append(first_answer(p, p_port, t0))
        finally:
            stop(p)
    proc, port, cfg, base = spawn()
    try:
        first_answer(proc, port, time.perf_counter())
        # 1. SIGHUP -> first request answered by a model only the new config has.
        to_new = []
        for i in range(RELOADS):
            open(cfg, "w").write(base + f'\n[models.v{i}]\ntargets = ["mock:echo"]\n')
            t0 = time.perf_counter()
            proc.send_signal(signal.SIGHUP)
            while chat(port, f"v{i}") != 200:
                pass
            to_new.append((time.perf_counter() - t0) * 1000)
        # 2. Latency of requests in flight, without and with a reload every 100 ms.
        def load(seconds, out):
            end = time.time() + seconds
            while time.time() < end:
                t = time.perf_counter()
                assert chat(port, "default") == 200
                out.append((time.perf_counter() - t) * 1000)
        def run(with_reloads):
            lat = []
            threads = [threading.Thread(target=load, args=(5, lat)) for _ in range(4)]
            for t in threads:
                t.start()
            while with_reloads and any(t.is_alive() for t in threads):
                proc.send_signal(signal.SIGHUP)
                time.sleep(0.1)
            for t in threads:
                t.join()
            return lat
        quiet, busy = run(False), run(True)
        q = lambda xs, p: statistics.quantiles(xs, n=100, method="inclusive")[p - 1]
        print("| measure | p50 ms | p95 ms | max ms | n |")
        print("|---|---|---|---|---|")
        print(f"| spawn → first answered chat request (start-up) | {statistics.median(starts):.1f} | {q(starts, 95):.1f} | {max(starts):.1f} | {len(starts)} |")
        print(f"| SIGHUP → first request on the new config | {statistics.median(to_new):.1f} | {q(to_new, 95):.1f} | {max(to_new):.1f} | {len(to_new)} |")
        print(f"| chat latency, no reloads | {q(quiet, 50):.2f} | {q(quiet, 95):.2f} | {max(quiet):.1f} | {len(quiet)} |")
        print(f"| chat latency, a reload every 100 ms | {q(busy, 50):.2f} | {q(busy, 95):.2f} | {max(busy):.1f} | {len(busy)} |")
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
