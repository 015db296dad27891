#!/usr/bin/env bash
# bench/run.sh — one command that benchmarks chatgate against a fixed-answer
# upstream (nginx), beside bare nginx proxy_pass (the reference every ratio
# is to) and, on request, LiteLLM and Portkey; prints a markdown report (also
# kept in bench/results/).
#
#   bench/run.sh                   nginx direct, nginx proxy_pass, chatgate: load,
#                                  open loop, streams, features, Redis, memory, start-up
#   bench/run.sh --with-litellm    the same runs side by side with LiteLLM proxy (1 worker)
#   bench/run.sh --with-portkey    ... with Portkey's gateway (npm @portkey-ai/gateway)
#   bench/run.sh --with-peers      both peers
#   bench/run.sh --soak SECONDS    also: chatgate's RSS every 10 s under 1,000 req/s
#   bench/run.sh --quick           short runs, for checking the harness itself
#
# Knobs (environment): BENCH_DURATION (s per load run, default 10),
# BENCH_CONCURRENCY ("1 50 256"), BENCH_IPS (distinct client IPs, 100000),
# BENCH_EVICTION_WAIT (s to wait for the limiter's 60 s eviction tick, 70),
# BENCH_STREAMS (streams timed per target, 300), BENCH_CONNS (held
# connections, 1000), BENCH_IDLE_STREAMS (idle SSE streams held, 10000),
# BENCH_OPEN_RATE (open-loop req/s, 5000), BENCH_SOAK_RATE (1000),
# BENCH_QUIET_TRIES (20 s load checks before measuring, 30), BENCH_PACE_MS
# (pause per connection in the paced c=50 run, 10); pinned versions:
# LITELLM_VERSION, OHA_VERSION (Portkey: bench/portkey/package-lock.json);
# BENCH_CHATGATE_BIN (a chatgate binary already built: no cargo build).
#
# Every load loop targets 127.0.0.1 only and is bounded in time and requests.
# It stops only what it started (by PID and the sessions it made), on exit.
set -euo pipefail

WITH_LITELLM=0
WITH_PORTKEY=0
QUICK=0
SOAK=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --with-litellm) WITH_LITELLM=1 ;;
    --with-portkey) WITH_PORTKEY=1 ;;
    --with-peers) WITH_LITELLM=1 WITH_PORTKEY=1 ;;
    --soak)
      SOAK=${2:-}
      [[ $SOAK =~ ^[0-9]+$ && $SOAK -ge 10 && $SOAK -le 7200 ]] || { echo "--soak takes 10..7200 seconds" >&2; exit 2; }
      shift
      ;;
    --quick) QUICK=1 ;;
    -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ $QUICK == 1 ]]; then
  : "${BENCH_DURATION:=2}" "${BENCH_IPS:=5000}" "${BENCH_EVICTION_WAIT:=0}" "${BENCH_IDLE_STREAMS:=1000}"
  : "${BENCH_STREAMS:=30}" "${BENCH_CONNS:=200}" "${BENCH_QUIET_TRIES:=1}"
fi
DURATION=${BENCH_DURATION:-10}
CONCURRENCY=${BENCH_CONCURRENCY:-"1 50 256"}
IPS=${BENCH_IPS:-100000}
EVICTION_WAIT=${BENCH_EVICTION_WAIT:-70}
STREAMS=${BENCH_STREAMS:-300}
CONNS=${BENCH_CONNS:-1000}
IDLE_STREAMS=${BENCH_IDLE_STREAMS:-10000}
OPEN_RATE=${BENCH_OPEN_RATE:-5000}
SOAK_RATE=${BENCH_SOAK_RATE:-1000}
QUIET_TRIES=${BENCH_QUIET_TRIES:-30}
PACE_MS=${BENCH_PACE_MS:-10}

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
STARTED_AT=$(date +%s)

ensure_tools
[[ $WITH_PORTKEY == 0 ]] || ensure_portkey
[[ $WITH_LITELLM == 0 ]] || ensure_litellm
if [[ -n ${BENCH_CHATGATE_BIN:-} ]]; then
  CHATGATE_BIN=$BENCH_CHATGATE_BIN
  log "using the chatgate binary $CHATGATE_BIN (BENCH_CHATGATE_BIN; not rebuilt)"
else
  log "building chatgate (cargo build --release)"
  (cd "$ROOT" && cargo build --release -q)
  CHATGATE_BIN="$ROOT/target/release/chatgate"
fi
COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' + uncommitted changes')"

# ---------------------------------------------------------------- quiet check
# Figures are only worth taking on an idle machine: wait (bounded) for a
# 1-minute load average under 0.5 and no rustc running; else say so.
QUIET="yes"
for try in $(seq "$QUIET_TRIES"); do
  load1=$(cut -d' ' -f1 /proc/loadavg)
  rustcs=$(pgrep -c -x rustc || true)
  if awk -v l="$load1" 'BEGIN {exit !(l < 0.5)}' && [[ $rustcs == 0 ]]; then break; fi
  if [[ $try == "$QUIET_TRIES" ]]; then
    QUIET="no (load $load1, $rustcs rustc after $QUIET_TRIES checks)"
    break
  fi
  log "machine busy (load $load1, $rustcs rustc); waiting 20 s ($try/$QUIET_TRIES)"
  sleep 20
done
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "quiet: $QUIET; load average $LOAD_AT_START"

write_fixtures
start_upstream
start_nginx_proxy
start_idle_upstream 900
write_chatgate_config

# One target through every load shape: closed loop at each concurrency,
# paced c=50, sequential streams, open loop at $OPEN_RATE/s.
# BENCH_HEADERS (set by the caller) go with every request; the streams get
# BENCH_STREAM_HEADERS instead, where set.
all_loads() { # label json-url stream-url key stream-body sid
  local label=$1 url=$2 surl=$3 key=$4 sbody=$5 sid=$6 c
  for c in $CONCURRENCY; do measure "$label" "$url" "$key" "$c" "$sid"; done
  BENCH_DELAY_MS=$PACE_MS measure "$label-paced" "$url" "$key" 50 "$sid"
  BENCH_HEADERS=${BENCH_STREAM_HEADERS:-${BENCH_HEADERS:-}} streams "$label" "$surl" "$key" "$sbody" "$sid"
  openloop "$label" "$url" "$key" "$sid"
}

# ---- 1. the fixed upstream alone: the baseline of every "added" figure.
# Paced: 50 connections, each pausing $PACE_MS ms between answer and next
# request, so the latency is measured below saturation (a closed loop at c=50
# runs the 2 cores flat out, and its latency is then mostly queueing).
all_loads nginx-direct "http://127.0.0.1:$UP_JSON/v1/chat/completions" \
  "http://127.0.0.1:$UP_SSE/v1/chat/completions" "" "$DIRECT_STREAM_BODY" "$NGINX_SID"

# ---- 2. bare nginx proxy_pass: the reference of every ratio
all_loads nginx-proxy "http://127.0.0.1:$PX_JSON/v1/chat/completions" \
  "http://127.0.0.1:$PX_SSE/v1/chat/completions" "" "$DIRECT_STREAM_BODY" "$PROXY_SID"

# ---- 3. chatgate, memory backend, plain path
start_chatgate "$CHATGATE_BIN"
sleep 1
mem idle "fresh start, before any request"
all_loads chatgate "$LOAD_URL_CG" "$LOAD_URL_CG" "$BENCH_KEY" "$STREAM_BODY" "$CG_PID"
mem after-load "after the load and stream runs above"

# ---- 4. memory with many open keep-alive connections (one request each)
python3 "$HERE/hold_connections.py" 127.0.0.1 "$CG_PORT" /api/v1/chat/completions \
  "$BENCH_KEY" "$BODY" "$CONNS" 60 >"$WORK/hold.out" 2>&1 &
HOLD_PID=$!
STARTED+=("$HOLD_PID")
for _ in $(seq 300); do grep -q READY "$WORK/hold.out" && break; sleep 0.1; done
held=$(ss -Htn state established "( sport = :$CG_PORT )" | wc -l)
mem "$CONNS-connections" "$(tr -d '\n' <"$WORK/hold.out"); $held established at the server"
forget "$HOLD_PID"

# ---- 5. memory after many distinct client IPs through the per-IP limiter
# Short wrk rounds (wrk always runs its full -d), each starting past the
# addresses the previous one may have had in flight, until $IPS answered.
distinct_ips() { # pass first-octet
  local pass=$1 base=$2 start=0 answered=0 bad=0 rounds=0 out req
  while ((answered < IPS && rounds < 100)); do
    out=$(BENCH_AUTH=$BENCH_KEY BENCH_BODY_FILE=$BODY BENCH_IP_BASE=$base BENCH_IP_START=$start \
      wrk -t1 -c32 -d2s --timeout 10s -s "$HERE/wrk/distinct_ips.lua" "$LOAD_URL_CG" | grep '^RESULT')
    req=$(field requests "$out")
    answered=$((answered + req))
    bad=$((bad + $(field status_errors "$out")))
    start=$((start + req + 64))
    rounds=$((rounds + 1))
  done
  mem "ips-pass$pass" "right after $answered requests, each from a new client IP ($bad non-2xx)"
  if [[ $EVICTION_WAIT -gt 0 ]]; then
    log "waiting ${EVICTION_WAIT}s for the limiter's eviction tick (every 60 s)"
    sleep "$EVICTION_WAIT"
    mem "ips-pass$pass-evicted" "${EVICTION_WAIT}s later: at least one eviction tick has run"
  fi
}
distinct_ips 1 10
distinct_ips 2 100
if [[ $SOAK -gt 0 ]]; then soak "$SOAK"; fi
forget "$CG_PID"

# ---- 6. idle streams: each client stream open, its upstream sent one event
start_chatgate "$CHATGATE_BIN" CHATGATE_CONFIG="$WORK/streams.toml"
sleep 1
mem idle-streams-config "fresh start with the idle-stream limits (max_concurrent_requests 30000)"
idle_streams "$IDLE_STREAMS"
forget "$CG_PID"
forget "$IDLE_SID"

# ---- 7. features on: a cache miss per request (unique prompts), budgets,
# three guard rules, a canary at 10 %; then the same prompt again and again
# (cache hits); then spend alone (prices + budgets), the base of the Redis row.
start_chatgate "$CHATGATE_BIN" CHATGATE_CONFIG="$WORK/features.toml"
for c in 50 1; do BENCH_UNIQUE=1 measure chatgate-features "$LOAD_URL_CG" "$BENCH_KEY" "$c" "$CG_PID"; done
for c in 50 1; do measure chatgate-cache-hit "$LOAD_URL_CG" "$BENCH_KEY" "$c" "$CG_PID"; done
forget "$CG_PID"
start_chatgate "$CHATGATE_BIN" CHATGATE_CONFIG="$WORK/spend.toml"
measure chatgate-spend "$LOAD_URL_CG" "$BENCH_KEY" 50 "$CG_PID"
forget "$CG_PID"

# ---- 8. Redis backend: the spend run again, limits and spend shared through Redis
REDIS_PORT=$(free_port)
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no
REDIS_SID=$LAST_PID
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
start_chatgate "$CHATGATE_BIN" CHATGATE_CONFIG="$WORK/spend.toml" CHATGATE_STATE__BACKEND=redis CHATGATE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
redis_before=$(cpu_ticks "$REDIS_SID")
measure chatgate-redis "$LOAD_URL_CG" "$BENCH_KEY" 50 "$CG_PID"
redis_cpu=$(($(cpu_ticks "$REDIS_SID") - redis_before))
forget "$CG_PID"

# ---- 9. peers: same upstream, same load
PEERS_RAN=()
if [[ $WITH_PORTKEY == 1 ]] && start_portkey; then
  PEERS_RAN+=(portkey)
  BENCH_HEADERS=$PK_JSON_HEADERS BENCH_STREAM_HEADERS=$PK_SSE_HEADERS \
    all_loads portkey "$PK_URL" "$PK_URL" sk-upstream-fake "$DIRECT_STREAM_BODY" "$PK_SID"
  printf 'portkey (for comparison)\t%s\tevery Portkey process, after its runs\n' \
    "$(ps -o rss= -s "$PK_SID" | awk '{s += $1} END {print s}')" >>"$MEM_TSV"
  forget "$PK_SID"
fi
if [[ $WITH_LITELLM == 1 ]] && start_litellm; then
  PEERS_RAN+=(litellm)
  all_loads litellm "$LL_URL" "$LL_URL" "$LL_KEY" "$STREAM_BODY" "$LL_SID"
  printf 'litellm (for comparison)\t%s\tevery LiteLLM process, after its runs\n' \
    "$(ps -o rss= -s "$LL_SID" | awk '{s += $1} END {print s}')" >>"$MEM_TSV"
  forget "$LL_SID"
fi

# ---- 10. start-up to the first answer, and config reload (own processes)
python3 "$HERE/reload.py" "$CHATGATE_BIN" >"$WORK/reload.md"

# ---------------------------------------------------------------- report
mkdir -p "$RESULTS"
STAMP=$(date +%Y%m%d-%H%M%S)
REPORT="$RESULTS/$STAMP.md"
{
  echo "# chatgate benchmark $STAMP"
  echo
  echo "- machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM"
  echo "- commit built: $COMMIT; binary: ${CHATGATE_BIN#"$ROOT"/}"
  echo "- quiet machine: $QUIET; load average at start: $LOAD_AT_START; run took $(($(date +%s) - STARTED_AT)) s"
  peer() { # name asked description
    if [[ " ${PEERS_RAN[*]} " == *" $1 "* ]]; then echo "$3"
    elif [[ $2 == 1 ]]; then echo "$1 asked for but did not start (its log's end is in the run's output)"
    else echo "no $1"; fi
  }
  echo "- peers: $(peer portkey "$WITH_PORTKEY" "Portkey gateway $PORTKEY_VERSION (Node $(node --version 2>/dev/null))"), $(peer litellm "$WITH_LITELLM" "LiteLLM $LITELLM_VERSION (1 worker)")"
  echo "- load: wrk (closed loop) and oha $OHA_VERSION (open loop, ${OPEN_RATE}/s), ${DURATION}s per run after a ${WARMUP}s warm-up, POST .../chat/completions; upstream: nginx, fixed answer"
  echo
  echo "## Summary: each figure and its ratio to bare nginx proxy_pass (same run)"
  echo
  python3 "$HERE/table.py" "$LOAD_TSV" "$OPEN_TSV" "$STREAM_TSV"
  echo
  echo "- nginx-proxy: a second nginx, \`proxy_pass\` with a keep-alive pool to the upstream, access log off: checks nothing."
  echo "- chatgate: auth, per-IP and per-key limits, info JSON request logs, metrics. -features: + a cache miss per request (unique prompts), budgets, three guard rules, a canary at 10 %, tracing off. -cache-hit: the same config, one prompt. -spend: prices + budgets only. -redis: -spend with \`[state] backend = \"redis\"\`."
  echo "- added: the target's p50 (or p99, TTFB) minus nginx-direct's at the same load; open loop: oha \`-q $OPEN_RATE --latency-correction\`, 50 connections."
  echo
  echo "## Load"
  echo
  echo "| target | conc | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU ms/req | requests | errors | other CPU % |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' 'NR == 1 {next}
    function key(t, c) {return c (t ~ /-paced$/ ? "p" : "")}
    {rows[NR] = $0; if ($1 ~ /^nginx-direct/) {b50[key($1, $2)] = $4; b99[key($1, $2)] = $5}}
    END {
      for (i = 2; i <= NR; i++) {
        split(rows[i], f, "\t")
        k = key(f[1], f[2])
        base = (k in b50) && f[1] !~ /^nginx-direct/
        a50 = base ? sprintf("%.3f", (f[4] - b50[k]) / 1000) : "-"
        a99 = base ? sprintf("%.3f", (f[5] - b99[k]) / 1000) : "-"
        printf "| %s | %d | %d | %.3f | %.3f | %s | %s | %.4f | %d | %d | %.1f |\n", f[1], f[2], f[3], f[4] / 1000, f[5] / 1000, a50, a99, f[6], f[7], f[8], f[9]
      }
    }' "$LOAD_TSV"
  echo
  echo "- CPU ms/req: utime+stime of the target's processes (nginx: master and worker) over the run, divided by the requests answered."
  echo "- other CPU %: busy time of processes outside this benchmark during the run, as a share of all $(nproc) cores (machine busy time from /proc/stat minus the benchmark's processes and wrk); above a few % the row was measured on a shared machine."
  echo "- added: the target's percentile minus nginx-direct's at the same concurrency (chatgate's figure includes its own call to nginx)."
  echo "- *-paced: c=50 with each connection pausing ${PACE_MS} ms after every answer (wrk's delay()), i.e. below saturation; the pause is not counted in the latency."
  if grep -q '^chatgate-redis' "$LOAD_TSV"; then
    echo "- chatgate-redis: the chatgate-spend run with \`[state] backend = \"redis\"\` (rate limits and spend in Redis) against a redis-server on loopback (which used $((redis_cpu * 1000 / CLK_TCK)) ms of CPU over that run)."
  fi
  echo
  echo "## Open loop ($OPEN_RATE req/s offered for ${DURATION}s, oha --latency-correction, 50 connections)"
  echo
  echo "| target | offered/s | achieved/s | p50 ms | p99 ms | added p99 ms | CPU ms/req | requests | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' 'NR == 1 {next} {rows[NR] = $0; if ($1 == "nginx-direct") base = $5}
    END {
      for (i = 2; i <= NR; i++) {
        split(rows[i], f, "\t")
        added = f[1] == "nginx-direct" ? "-" : sprintf("%.3f", (f[5] - base) / 1000)
        printf "| %s | %d | %d | %.3f | %.3f | %s | %.4f | %d | %d |\n", f[1], f[2], f[3], f[4] / 1000, f[5] / 1000, added, f[6], f[7], f[8]
      }
    }' "$OPEN_TSV"
  echo
  echo "## Streams ($STREAMS sequential streams over one keep-alive connection, curl)"
  echo
  echo "| target | TTFB p50 ms | TTFB p99 ms | total p50 ms | total p99 ms | added TTFB p50 ms | n | CPU ms/stream |"
  echo "|---|---:|---:|---:|---:|---:|---|---:|"
  awk -F'\t' 'NR == 1 {next} {rows[NR] = $0; if ($1 == "nginx-direct") base = $2}
    END {
      for (i = 2; i <= NR; i++) {
        split(rows[i], f, "\t")
        added = f[1] == "nginx-direct" ? "-" : sprintf("%.3f", (f[2] - base) / 1000)
        printf "| %s | %.3f | %.3f | %.3f | %.3f | %s | %s | %.4f |\n", f[1], f[2] / 1000, f[3] / 1000, f[4] / 1000, f[5] / 1000, added, f[6], f[7]
      }
    }' "$STREAM_TSV"
  echo
  echo "## Memory (VmRSS of the chatgate process)"
  echo
  echo "| state | RSS MB | note |"
  echo "|---|---:|---|"
  awk -F'\t' 'NR > 1 {printf "| %s | %.1f | %s |\n", $1, $2 / 1024, $3}' "$MEM_TSV"
  if [[ $SOAK -gt 0 ]]; then
    echo
    echo "## Soak (${SOAK}s at ${SOAK_RATE} req/s offered, oha; VmRSS every 10 s)"
    echo
    echo "$SOAK_SUMMARY."
    echo
    echo "| seconds | RSS MB |"
    echo "|---:|---:|"
    awk -F'\t' 'NR > 1 {printf "| %d | %.1f |\n", $1, $2 / 1024}' "$SOAK_TSV"
  fi
  echo
  echo "## Start-up and config reload (bench/reload.py, mock provider)"
  echo
  cat "$WORK/reload.md"
} >"$REPORT"
cp "$LOAD_TSV" "$RESULTS/$STAMP-load.tsv"
cp "$STREAM_TSV" "$RESULTS/$STAMP-streams.tsv"
cp "$MEM_TSV" "$RESULTS/$STAMP-memory.tsv"
cp "$OPEN_TSV" "$RESULTS/$STAMP-openloop.tsv"
[[ $SOAK == 0 ]] || cp "$SOAK_TSV" "$RESULTS/$STAMP-soak.tsv"
echo
cat "$REPORT"
echo
log "written to ${REPORT#"$ROOT"/}"
