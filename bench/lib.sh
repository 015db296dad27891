# shellcheck shell=bash disable=SC2034  # variables here are used by the scripts that source this file
# bench/lib.sh — shared by bench/run.sh and bench/profile.sh (sourced, not run).
# Processes this harness starts, the fixed-answer upstream (nginx), chatgate's
# bench config, and the load/CPU/memory measurements. Loopback only.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
RESULTS="$HERE/results"
WARMUP=2
CLK_TCK=$(getconf CLK_TCK)
BENCH_KEY="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- processes
WORK=$(mktemp -d /tmp/chatgate-bench.XXXXXX)
STARTED=() # PIDs this script started; each setsid-started one leads its own session.

stop_pid() { # Stops one process we started, and its session (its children).
  local pid=$1
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Starts "$@" in a session of its own (its children stop with it); sets
# LAST_PID (also the session id). stderr goes to $WORK/<name>.log, and so
# does stdout unless START_STDOUT names another file.
start() {
  local name=$1
  shift
  setsid "$@" >"${START_STDOUT:-$WORK/$name.log}" 2>"$WORK/$name.log" </dev/null &
  LAST_PID=$!
  STARTED+=("$LAST_PID")
}
forget() { # Stops a started process and drops it from the list.
  local pid=$1 kept=() p
  stop_pid "$pid"
  for p in "${STARTED[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
  STARTED=("${kept[@]}")
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # url [tries of 0.2 s]
  local url=$1 tries=${2:-150}
  for _ in $(seq "$tries"); do
    curl -s -o /dev/null -m 1 "$url" && return 0
    sleep 0.2
  done
  echo "timed out waiting for $url" >&2
  return 1
}

# utime+stime of every process in session $1, in clock ticks.
cpu_ticks() {
  local sid=$1 total=0 stat stat_line rest fields
  for stat in /proc/[0-9]*/stat; do
    read -r stat_line 2>/dev/null <"$stat" || continue
    rest=${stat_line##*) }
    read -ra fields <<<"$rest"
    # fields[0] is field 3 (state): session is field 6, utime 14, stime 15.
    [[ ${fields[3]} == "$sid" ]] || continue
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Busy clock ticks of the whole machine (user, nice, system, irq, softirq, steal).
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }

# Sets CHILD_TICKS: clock ticks of this shell's finished children (wrk runs
# there), from `times`, which must run in this shell, not in a $(…) subshell.
read_child_ticks() {
  times >"$WORK/times.txt"
  CHILD_TICKS=$(awk -v hz="$CLK_TCK" 'NR == 2 {
    t = 0
    for (i = 1; i <= 2; i++) {split($i, p, /[ms]/); t += (p[1] * 60 + p[2]) * hz}
    printf "%d\n", t
  }' "$WORK/times.txt")
}

# Clock ticks of every process in the sessions this script started.
our_ticks() {
  local ids=" ${STARTED[*]} " total=0 stat stat_line rest fields
  for stat in /proc/[0-9]*/stat; do
    read -r stat_line 2>/dev/null <"$stat" || continue
    rest=${stat_line##*) }
    read -ra fields <<<"$rest"
    [[ $ids == *" ${fields[3]} "* ]] || continue
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}

# ---------------------------------------------------------------- installs
SUDO=""
[[ $(id -u) == 0 ]] || SUDO="sudo"
APT_UPDATED=0
apt_install() {
  [[ $APT_UPDATED == 1 ]] || { $SUDO apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
# A package's postinst may start a system service: stop one that we caused.
install_server() { # package, binary, service
  command -v "$2" >/dev/null && return 0
  local was=0
  pgrep -x "$2" >/dev/null && was=1
  log "installing $1"
  apt_install "$1"
  if [[ $was == 0 ]] && pgrep -x "$2" >/dev/null; then
    log "stopping the $3 service that installing $1 started"
    $SUDO service "$3" stop >/dev/null 2>&1 || true
  fi
}
# wrk is a Debian package (installs in seconds; C, one epoll loop per thread,
# Lua for bodies, headers and exact percentiles). oha would need a long
# `cargo install` on a 2-core machine for no gain in accuracy here.
ensure_tools() {
  command -v wrk >/dev/null || { log "installing wrk"; apt_install wrk; }
  install_server nginx-light nginx nginx
  install_server redis-server redis-server redis-server
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# ---------------------------------------------------------------- upstream
BODY="$WORK/chat.json"
STREAM_BODY="$WORK/stream.json"
DIRECT_STREAM_BODY="$WORK/direct-stream.json"
# The fixed answer of the fake upstream (also in benches/hot_path.rs).
COMPLETION='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Lisbon in May is usually warm and sunny, around 20 to 24 degrees, with little rain.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":21,"total_tokens":52}}'

write_fixtures() {
  cat >"$BODY" <<'EOF'
{"model":"default","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Hello! Could you tell me what the weather is usually like in Lisbon in May?"}],"max_tokens":64,"temperature":0.2}
EOF
  sed 's/"model":"default"/"model":"stream"/; s/}$/,"stream":true}/' "$BODY" >"$STREAM_BODY"
  sed 's/}$/,"stream":true}/' "$BODY" >"$DIRECT_STREAM_BODY"
}

# One `data:` line of an OpenAI stream chunk, newlines as nginx escapes.
chunk() { printf 'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[%s]%s}\\n\\n' "$1" "${2:-}"; }

# The fake OpenAI upstream: fixed answers, one port for JSON and one for SSE
# (chatgate always POSTs /v1/chat/completions; a stream says so in its body).
# Sets UP_JSON, UP_SSE, NGINX_SID.
start_upstream() {
  UP_JSON=$(free_port)
  UP_SSE=$(free_port)
  local sse w
  sse=$(
    chunk '{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}'
    for w in Lisbon " in" " May" " is" " usually" " warm" " and" " sunny," " around" " 22" " degrees."; do
      chunk "{\"index\":0,\"delta\":{\"content\":\"$w\"},\"finish_reason\":null}"
    done
    chunk '{"index":0,"delta":{},"finish_reason":"stop"}'
    chunk '' ',"usage":{"prompt_tokens":31,"completion_tokens":11,"total_tokens":42}'
    printf 'data: [DONE]\\n\\n'
  )
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:$UP_JSON backlog=4096;
    location / { default_type application/json; return 200 '$COMPLETION'; }
  }
  server {
    listen 127.0.0.1:$UP_SSE backlog=4096;
    location / { default_type text/event-stream; return 200 '$sse'; }
  }
}
EOF
  start nginx nginx -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf"
  NGINX_SID=$LAST_PID
  wait_http "http://127.0.0.1:$UP_JSON/v1/chat/completions"
}

# ---------------------------------------------------------------- chatgate
# Production-like: auth on (the key read from the environment), per-IP and
# per-key limits on but far above the load, info-level JSON request logs to
# /dev/null (the non-blocking writer still formats and writes every line).
write_chatgate_config() {
  CG_PORT=$(free_port)
  mkdir -p "$WORK/config"
  cat >"$WORK/config/default.toml" <<EOF
[server]
host = "127.0.0.1"
port = $CG_PORT
trusted_proxies = ["127.0.0.1/32"]   # lets the bench send distinct client IPs

[auth]
enabled = true
[auth.keys.bench]
env = "CHATGATE_BENCH_KEY"
requests_per_minute = 60000000
burst = 1000000

[rate_limit]
per_ip_requests_per_minute = 60000000
per_ip_burst = 1000000

[logging]
level = "info"
format = "json"

[providers.upstream]
kind = "openai"
base_url = "http://127.0.0.1:$UP_JSON/v1"
api_key_env = "BENCH_UPSTREAM_KEY"

[providers.upstream_sse]
kind = "openai"
base_url = "http://127.0.0.1:$UP_SSE/v1"
api_key_env = "BENCH_UPSTREAM_KEY"

[models.default]
targets = ["upstream:gpt-4o-mini"]

[models.stream]
targets = ["upstream_sse:gpt-4o-mini"]
EOF
  LOAD_URL_CG="http://127.0.0.1:$CG_PORT/api/v1/chat/completions"
}

start_chatgate() { # binary [extra env assignments...]; sets CG_PID
  local bin=$1
  shift
  # Request logs (stdout) to /dev/null: formatted and written, never stored.
  START_STDOUT=/dev/null start chatgate env -u RUST_LOG APP_ENV=development \
    CHATGATE_CONFIG_DIR="$WORK/config" CHATGATE_BENCH_KEY="$BENCH_KEY" \
    BENCH_UPSTREAM_KEY=sk-upstream-fake "$@" "$bin"
  CG_PID=$LAST_PID
  wait_http "http://127.0.0.1:$CG_PORT/health" || {
    tail -20 "$WORK/chatgate.log" >&2
    return 1
  }
}

# ---------------------------------------------------------------- load
wrk_run() { # url key conc seconds -> RESULT line
  local url=$1 key=$2 conc=$3 secs=$4 threads=1
  [[ $conc -ge 50 ]] && threads=2
  BENCH_AUTH=$key BENCH_BODY_FILE=$BODY wrk -t"$threads" -c"$conc" -d"${secs}s" --timeout 10s \
    -s "$HERE/wrk/chat.lua" "$url" | grep '^RESULT'
}
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }

LOAD_TSV="$WORK/load.tsv"
printf 'target\tconc\trps\tp50_us\tp99_us\tcpu_ms_per_req\trequests\terrors\tother_cpu_pct\n' >"$LOAD_TSV"

# One load run after a warm-up: requests/s, p50/p99, CPU per request of
# every process in session $sid (the target and its children), and how busy
# processes outside the benchmark kept the machine meanwhile (% of all cores:
# machine busy time minus our sessions' and wrk's).
measure() { # label url key conc sid
  local label=$1 url=$2 key=$3 conc=$4 sid=$5 before after out req dur errs
  local m0 m1 o0 o1 c0 c1 other
  wrk_run "$url" "$key" 50 "$WARMUP" >/dev/null
  read_child_ticks
  m0=$(machine_ticks) o0=$(our_ticks) c0=$CHILD_TICKS
  before=$(cpu_ticks "$sid")
  out=$(wrk_run "$url" "$key" "$conc" "$DURATION")
  after=$(cpu_ticks "$sid")
  read_child_ticks
  m1=$(machine_ticks) o1=$(our_ticks) c1=$CHILD_TICKS
  other=$(((m1 - m0) - (o1 - o0) - (c1 - c0)))
  req=$(field requests "$out")
  dur=$(field duration_us "$out")
  errs=$(($(field status_errors "$out") + $(field connect_errors "$out") + $(field read_errors "$out") + $(field write_errors "$out") + $(field timeouts "$out")))
  awk -v t="$label" -v c="$conc" -v r="$req" -v d="$dur" -v p50="$(field p50_us "$out")" \
    -v p99="$(field p99_us "$out")" -v cpu=$((after - before)) -v hz="$CLK_TCK" -v e="$errs" \
    -v o="$other" -v n="$(nproc)" \
    'BEGIN {printf "%s\t%d\t%.0f\t%d\t%d\t%.4f\t%d\t%d\t%.1f\n", t, c, r / (d / 1e6), p50, p99, (cpu * 1000 / hz) / (r > 0 ? r : 1), r, e, (o > 0 ? o : 0) * 100 / (hz * n * d / 1e6)}' >>"$LOAD_TSV"
  log "$label c=$conc: $(tail -1 "$LOAD_TSV" | cut -f3- | tr '\t' ' ') (rps p50us p99us cpu-ms/req requests errors other-cpu%)"
}

# p50 and p99 (tab-separated) of sorted numbers on stdin.
pct() { awk '{v[NR] = $1} END {i = int(NR * .99); if (i < 1) i = 1; printf "%d\t%d", v[int(NR * .5) + 1], v[i]}'; }

STREAM_TSV="$WORK/stream.tsv"
printf 'target\tttfb_p50_us\tttfb_p99_us\ttotal_p50_us\ttotal_p99_us\tn\n' >"$STREAM_TSV"

# Time to first byte and total of $STREAMS sequential streams over one
# keep-alive connection (one curl process, one line per transfer).
streams() { # label url key body
  local label=$1 url=$2 key=$3 body=$4 cfg="$WORK/curl-$1.cfg" n=$STREAMS bad ttfb total
  : >"$cfg"
  for _ in $(seq $((n + 20))); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url" >>"$cfg"; done
  curl -s -K "$cfg" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    --data-binary "@$body" -w '%{http_code} %{time_starttransfer} %{time_total}\n' >"$WORK/stream-$label.txt"
  # The first 20 warm the connection and pools; non-200 answers count as failures.
  bad=$(tail -n "$n" "$WORK/stream-$label.txt" | awk '$1 != 200' | wc -l)
  ttfb=$(tail -n "$n" "$WORK/stream-$label.txt" | awk '{printf "%d\n", $2 * 1e6}' | sort -n | pct)
  total=$(tail -n "$n" "$WORK/stream-$label.txt" | awk '{printf "%d\n", $3 * 1e6}' | sort -n | pct)
  printf '%s\t%s\t%s\t%s%s\n' "$label" "$ttfb" "$total" "$n" "$([[ $bad == 0 ]] || echo " ($bad failed)")" >>"$STREAM_TSV"
  log "stream $label: $(tail -1 "$STREAM_TSV" | cut -f2- | tr '\t' ' ') (ttfb p50/p99, total p50/p99 us, n)"
}

MEM_TSV="$WORK/memory.tsv"
printf 'state\tvmrss_kb\tnote\n' >"$MEM_TSV"
mem() { # state note
  local kb
  kb=$(rss_kb "$CG_PID")
  printf '%s\t%s\t%s\n' "$1" "$kb" "${2:-}" >>"$MEM_TSV"
  log "RSS $1: $kb kB ${2:-}"
}
