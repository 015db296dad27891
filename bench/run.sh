#!/usr/bin/env bash
# bench/run.sh — one command that benchmarks chatgate against a fixed-answer
# upstream (nginx) and prints a markdown table (also kept in bench/results/).
#
#   bench/run.sh                   nginx direct vs chatgate: load, streams, memory, Redis
#   bench/run.sh --with-litellm    the same runs side by side with LiteLLM proxy (1 worker)
#   bench/run.sh --quick           short runs, for checking the harness itself
#
# Knobs (environment): BENCH_DURATION (s per load run, default 10),
# BENCH_CONCURRENCY ("1 50 256"), BENCH_IPS (distinct client IPs, 100000),
# BENCH_EVICTION_WAIT (s to wait for the limiter's 60 s eviction tick, 70),
# BENCH_STREAMS (streams timed per target, 300), BENCH_CONNS (held
# connections, 1000), BENCH_QUIET_TRIES (20 s load checks before measuring,
# 30), BENCH_PACE_MS (pause per connection in the paced c=50 run, 10),
# LITELLM_VERSION (pinned for --with-litellm).
#
# Every load loop targets 127.0.0.1 only and is bounded in time and requests.
# It stops only what it started (by PID and the sessions it made), on exit.
set -euo pipefail

WITH_LITELLM=0
QUICK=0
for arg in "$@"; do
  case "$arg" in
    --with-litellm) WITH_LITELLM=1 ;;
    --quick) QUICK=1 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $QUICK == 1 ]]; then
  : "${BENCH_DURATION:=2}" "${BENCH_IPS:=5000}" "${BENCH_EVICTION_WAIT:=0}"
  : "${BENCH_STREAMS:=30}" "${BENCH_CONNS:=200}" "${BENCH_QUIET_TRIES:=1}"
fi
DURATION=${BENCH_DURATION:-10}
CONCURRENCY=${BENCH_CONCURRENCY:-"1 50 256"}
IPS=${BENCH_IPS:-100000}
EVICTION_WAIT=${BENCH_EVICTION_WAIT:-70}
STREAMS=${BENCH_STREAMS:-300}
CONNS=${BENCH_CONNS:-1000}
QUIET_TRIES=${BENCH_QUIET_TRIES:-30}
PACE_MS=${BENCH_PACE_MS:-10}
LITELLM_VERSION=${LITELLM_VERSION:-1.106.2}

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
STARTED_AT=$(date +%s)

ensure_tools
if [[ $WITH_LITELLM == 1 && ! -x "$HERE/.venv/bin/litellm" ]]; then
  log "installing litellm[proxy]==$LITELLM_VERSION into bench/.venv"
  python3 -m venv "$HERE/.venv"
  "$HERE/.venv/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION"
fi
log "building chatgate (cargo build --release)"
(cd "$ROOT" && cargo build --release -q)
CHATGATE_BIN="$ROOT/target/release/chatgate"
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
write_chatgate_config

# ---- 1. the fixed upstream alone: the baseline of every "added" figure
for c in $CONCURRENCY; do
  measure nginx-direct "http://127.0.0.1:$UP_JSON/v1/chat/completions" "" "$c" "$NGINX_SID"
done
streams nginx-direct "http://127.0.0.1:$UP_SSE/v1/chat/completions" "" "$DIRECT_STREAM_BODY"
# Paced: 50 connections, each pausing $PACE_MS ms between answer and next
# request, so the latency is measured below saturation (a closed loop at c=50
# runs the 2 cores flat out, and its latency is then mostly queueing).
BENCH_DELAY_MS=$PACE_MS measure nginx-direct-paced "http://127.0.0.1:$UP_JSON/v1/chat/completions" "" 50 "$NGINX_SID"

# ---- 2. chatgate, memory backend
start_chatgate "$CHATGATE_BIN"
sleep 1
mem idle "fresh start, before any request"
for c in $CONCURRENCY; do measure chatgate "$LOAD_URL_CG" "$BENCH_KEY" "$c" "$CG_PID"; done
BENCH_DELAY_MS=$PACE_MS measure chatgate-paced "$LOAD_URL_CG" "$BENCH_KEY" 50 "$CG_PID"
streams chatgate "$LOAD_URL_CG" "$BENCH_KEY" "$STREAM_BODY"
mem after-load "after the load and stream runs above"

# ---- 3. memory with many open keep-alive connections (one request each)
python3 "$HERE/hold_connections.py" 127.0.0.1 "$CG_PORT" /api/v1/chat/completions \
  "$BENCH_KEY" "$BODY" "$CONNS" 60 >"$WORK/hold.out" 2>&1 &
HOLD_PID=$!
STARTED+=("$HOLD_PID")
for _ in $(seq 300); do grep -q READY "$WORK/hold.out" && break; sleep 0.1; done
held=$(ss -Htn state established "( sport = :$CG_PORT )" | wc -l)
mem "$CONNS-connections" "$(tr -d '\n' <"$WORK/hold.out"); $held established at the server"
forget "$HOLD_PID"

# ---- 4. memory after many distinct client IPs through the per-IP limiter
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
forget "$CG_PID"

# ---- 5. Redis backend: the c=50 run again, limits shared through Redis
REDIS_PORT=$(free_port)
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no
REDIS_SID=$LAST_PID
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
start_chatgate "$CHATGATE_BIN" CHATGATE_STATE__BACKEND=redis CHATGATE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
redis_before=$(cpu_ticks "$REDIS_SID")
measure chatgate-redis "$LOAD_URL_CG" "$BENCH_KEY" 50 "$CG_PID"
redis_cpu=$(($(cpu_ticks "$REDIS_SID") - redis_before))
forget "$CG_PID"

# ---- 6. LiteLLM proxy: same upstream, same load, one worker
if [[ $WITH_LITELLM == 1 ]]; then
  LL_PORT=$(free_port)
  LL_KEY="sk-$BENCH_KEY"
  cat >"$WORK/litellm.yaml" <<EOF
model_list:
  - model_name: default
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:$UP_JSON/v1
      api_key: sk-upstream-fake
  - model_name: stream
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:$UP_SSE/v1
      api_key: sk-upstream-fake
general_settings:
  master_key: $LL_KEY
litellm_settings:
  telemetry: false
EOF
  # Offline: the model-cost map bundled with the package, not a download.
  start litellm env LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False \
    "$HERE/.venv/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$LL_PORT" --num_workers 1
  LL_SID=$LAST_PID
  if wait_http "http://127.0.0.1:$LL_PORT/health/liveliness" 600; then
    for c in $CONCURRENCY; do
      measure litellm "http://127.0.0.1:$LL_PORT/v1/chat/completions" "$LL_KEY" "$c" "$LL_SID"
    done
    streams litellm "http://127.0.0.1:$LL_PORT/v1/chat/completions" "$LL_KEY" "$STREAM_BODY"
    printf 'litellm (for comparison)\t%s\tevery LiteLLM process, after its runs\n' \
      "$(ps -o rss= -s "$LL_SID" | awk '{s += $1} END {print s}')" >>"$MEM_TSV"
  else
    log "LiteLLM did not start; the end of its log:"
    tail -20 "$WORK/litellm.log" >&2
  fi
  forget "$LL_SID"
fi

# ---------------------------------------------------------------- report
mkdir -p "$RESULTS"
STAMP=$(date +%Y%m%d-%H%M%S)
REPORT="$RESULTS/$STAMP.md"
{
  echo "# chatgate benchmark $STAMP"
  echo
  echo "- machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM"
  echo "- commit built: $COMMIT"
  echo "- quiet machine: $QUIET; load average at start: $LOAD_AT_START; run took $(($(date +%s) - STARTED_AT)) s"
  echo "- load: wrk, ${DURATION}s per run after a ${WARMUP}s warm-up, POST .../chat/completions; upstream: nginx, fixed answer"
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
    echo "- chatgate-redis: the c=50 run with \`[state] backend = \"redis\"\` against a redis-server on loopback (which used $((redis_cpu * 1000 / CLK_TCK)) ms of CPU over that run)."
  fi
  echo
  echo "## Streams ($STREAMS sequential streams over one keep-alive connection, curl)"
  echo
  echo "| target | TTFB p50 ms | TTFB p99 ms | total p50 ms | total p99 ms | added TTFB p50 ms | n |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  awk -F'\t' 'NR == 1 {next} {rows[NR] = $0; if ($1 == "nginx-direct") base = $2}
    END {
      for (i = 2; i <= NR; i++) {
        split(rows[i], f, "\t")
        added = f[1] == "nginx-direct" ? "-" : sprintf("%.3f", (f[2] - base) / 1000)
        printf "| %s | %.3f | %.3f | %.3f | %.3f | %s | %s |\n", f[1], f[2] / 1000, f[3] / 1000, f[4] / 1000, f[5] / 1000, added, f[6]
      }
    }' "$STREAM_TSV"
  echo
  echo "## Memory (VmRSS of the chatgate process)"
  echo
  echo "| state | RSS MB | note |"
  echo "|---|---:|---|"
  awk -F'\t' 'NR > 1 {printf "| %s | %.1f | %s |\n", $1, $2 / 1024, $3}' "$MEM_TSV"
} >"$REPORT"
cp "$LOAD_TSV" "$RESULTS/$STAMP-load.tsv"
cp "$STREAM_TSV" "$RESULTS/$STAMP-streams.tsv"
cp "$MEM_TSV" "$RESULTS/$STAMP-memory.tsv"
echo
cat "$REPORT"
echo
log "written to ${REPORT#"$ROOT"/}"
