#!/usr/bin/env bash
# bench/tracing_cpu.sh — chatgate's CPU per request with tracing off and on.
#
#   cargo build --release && bench/tracing_cpu.sh
#
# Serves the mock provider (no upstream) from target/release/chatgate on a
# loopback port, drives POST /api/v1/chat/completions with wrk for
# BENCH_DURATION seconds (default 10) at BENCH_CONNECTIONS (default 16), and
# reads the process's user+system CPU time from /proc before and after.
# "on" exports every span (sample_ratio 1.0) to a local OTLP sink that
# answers 200. It stops only what it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/chatgate
DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }
[[ -x $BIN ]] || { echo "needs $BIN (cargo build --release)" >&2; exit 2; }

WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A sink that accepts OTLP/HTTP exports and answers 200 with an empty body.
SINK_PORT=$(free_port)
python3 - "$SINK_PORT" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
PIDS+=($!)

cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"default","messages":[{"role":"user","content":"hello there"}]}'
wrk.headers["content-type"] = "application/json"
LUA

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

run() { # mode endpoint sample_ratio
  local mode=$1 endpoint=$2 ratio=${3:-1.0} port
  port=$(free_port)
  mkdir -p "$WORK/$mode/config"
  cat >"$WORK/$mode/config/default.toml" <<TOML
[server]
port = $port
[auth]
enabled = false
[rate_limit]
per_ip_requests_per_minute = 100000000
per_ip_burst = 100000000
[logging]
level = "info"
format = "json"
[providers.mock]
kind = "mock"
[models.default]
targets = ["mock:echo"]
[tracing]
otlp_endpoint = "$endpoint"
sample_ratio = $ratio
TOML
  APP_ENV=development CHATGATE_CONFIG_DIR="$WORK/$mode/config" "$BIN" >/dev/null 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do curl -sf "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  local url="http://127.0.0.1:$port/api/v1/chat/completions"
  wrk -t1 -c"$CONNECTIONS" -d2s -s "$WORK/post.lua" "$url" >/dev/null   # warm-up
  local before after out requests
  before=$(cpu_ticks "$pid")
  out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/post.lua" "$url")
  after=$(cpu_ticks "$pid")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  local dropped
  dropped=$(curl -s "127.0.0.1:$port/metrics" | awk '/^chatgate_trace_spans_dropped_total/ {print $2}')
  local rps non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  awk -v m="$mode" -v t=$((after - before)) -v hz="$TICK" -v n="$requests" -v r="$rps" -v e="${non2xx:-0}" -v d="${dropped:-0}" \
    'BEGIN { printf "| %s | %d | %.0f | %.1f | %s | %s |\n", m, n, r, t / hz * 1e6 / n, e, d }'
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "| tracing | requests | requests/s | CPU µs per request (chatgate) | non-2xx | spans dropped |"
echo "|---|---|---|---|---|---|"
for _ in 1 2; do
  run off ""
  run "on, sample_ratio 1.0" "http://127.0.0.1:$SINK_PORT" 1.0
  run "on, sample_ratio 0.1" "http://127.0.0.1:$SINK_PORT" 0.1
done
