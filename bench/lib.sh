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
# Lua for bodies, headers and exact percentiles): every closed-loop run.
# The open-loop runs need a tool that sends at a fixed rate whatever the
# answers do and measures from the scheduled send time: oha (-q with
# --latency-correction), cargo-installed once at a pinned version into
# bench/.tools (a few minutes the first time, nothing after).
ensure_tools() {
  command -v wrk >/dev/null || { log "installing wrk"; apt_install wrk; }
  install_server nginx-light nginx nginx
  install_server redis-server redis-server redis-server
  # 10,000 idle streams through chatgate hold 20,000 sockets in it (client
  # and upstream side): raise the hard limit where allowed, then the soft one.
  ulimit -Hn 65536 2>/dev/null || true
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  ensure_oha
}

OHA_VERSION=${OHA_VERSION:-1.16.0}
OHA="$HERE/.tools/oha-$OHA_VERSION/bin/oha"
ensure_oha() {
  [[ -x $OHA ]] && return 0
  log "installing oha $OHA_VERSION into bench/.tools (cargo install, once)"
  cargo install -q oha --version "$OHA_VERSION" --locked --root "$HERE/.tools/oha-$OHA_VERSION"
}

# Portkey's whole dependency tree is pinned by bench/portkey/package-lock.json
# (see its package.json for the one override); installed with `npm ci`.
PORTKEY_DIR="$HERE/.tools/portkey"
ensure_portkey() {
  if [[ -f $PORTKEY_DIR/node_modules/@portkey-ai/gateway/build/start-server.js ]] &&
    cmp -s "$HERE/portkey/package-lock.json" "$PORTKEY_DIR/package-lock.json"; then
    return 0
  fi
  command -v npm >/dev/null || { log "installing nodejs and npm"; apt_install nodejs npm; }
  log "installing Portkey's gateway (bench/portkey/package-lock.json) into bench/.tools (npm ci)"
  mkdir -p "$PORTKEY_DIR"
  cp "$HERE/portkey/package.json" "$HERE/portkey/package-lock.json" "$PORTKEY_DIR/"
  (cd "$PORTKEY_DIR" && npm ci --no-audit --no-fund --loglevel=error)
}
PORTKEY_VERSION=$(sed -n 's/.*"@portkey-ai\/gateway": "\([^"]*\)".*/\1/p' "$HERE/portkey/package.json" | head -1)

LITELLM_VERSION=${LITELLM_VERSION:-1.106.2}
ensure_litellm() {
  # A venv that was moved keeps its old interpreter path in every script:
  # its pip no longer runs, and it is installed afresh.
  [[ -x "$HERE/.venv/bin/litellm" ]] && "$HERE/.venv/bin/pip" --version >/dev/null 2>&1 && return 0
  log "installing litellm[proxy]==$LITELLM_VERSION into bench/.venv"
  python3 -m venv --clear "$HERE/.venv"
  "$HERE/.venv/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION"
}

# ---------------------------------------------------------------- upstream
BODY="$WORK/chat.json"
STREAM_BODY="$WORK/stream.json"
DIRECT_STREAM_BODY="$WORK/direct-stream.json"
IDLE_BODY="$WORK/idle-stream.json"
# The fixed answer of the fake upstream (also in benches/hot_path.rs).
COMPLETION='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Lisbon in May is usually warm and sunny, around 20 to 24 degrees, with little rain.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":21,"total_tokens":52}}'

write_fixtures() {
  cat >"$BODY" <<'EOF'
{"model":"default","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Hello! Could you tell me what the weather is usually like in Lisbon in May?"}],"max_tokens":64,"temperature":0.2}
EOF
  sed 's/"model":"default"/"model":"stream"/; s/}$/,"stream":true}/' "$BODY" >"$STREAM_BODY"
  sed 's/}$/,"stream":true}/' "$BODY" >"$DIRECT_STREAM_BODY"
  sed 's/"model":"stream"/"model":"idle"/' "$STREAM_BODY" >"$IDLE_BODY"
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

# The reference target: a second nginx that proxies to the fixed-answer one
# and checks nothing (no auth, no limits, access log off), with a keep-alive
# pool to the upstream, as a gateway keeps one. A process of its own, so its
# CPU is counted apart from the upstream's. Sets PX_JSON, PX_SSE, PROXY_SID.
start_nginx_proxy() {
  PX_JSON=$(free_port)
  PX_SSE=$(free_port)
  mkdir -p "$WORK/proxy"
  cat >"$WORK/proxy/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/proxy/nginx.pid;
error_log $WORK/proxy/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/proxy/body;
  proxy_temp_path $WORK/proxy/proxy;
  fastcgi_temp_path $WORK/proxy/fastcgi;
  uwsgi_temp_path $WORK/proxy/uwsgi;
  scgi_temp_path $WORK/proxy/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  upstream up_json { server 127.0.0.1:$UP_JSON; keepalive 256; keepalive_requests 1000000; }
  upstream up_sse { server 127.0.0.1:$UP_SSE; keepalive 256; keepalive_requests 1000000; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  server {
    listen 127.0.0.1:$PX_JSON backlog=4096;
    location / { proxy_pass http://up_json; }
  }
  server {
    listen 127.0.0.1:$PX_SSE backlog=4096;
    location / { proxy_pass http://up_sse; proxy_buffering off; }
  }
}
EOF
  start nginx-proxy nginx -e "$WORK/proxy/error.log" -c "$WORK/proxy/nginx.conf"
  PROXY_SID=$LAST_PID
  wait_http "http://127.0.0.1:$PX_JSON/v1/chat/completions"
}

# The upstream of the idle-stream row: one event, then holds the stream.
start_idle_upstream() { # max-hold-seconds; sets UP_IDLE, IDLE_SID
  UP_IDLE=$(free_port)
  START_STDOUT="$WORK/idle-upstream.out" start idle-upstream python3 "$HERE/idle_sse_upstream.py" "$UP_IDLE" "$1"
  IDLE_SID=$LAST_PID
  for _ in $(seq 100); do grep -q LISTENING "$WORK/idle-upstream.out" 2>/dev/null && return 0; sleep 0.1; done
  echo "the idle-stream upstream did not start" >&2
  return 1
}

# ---------------------------------------------------------------- peers
# Portkey's open-source gateway (Node): no client auth of its own (the
# bearer it gets is the provider key it forwards), so the closest to
# chatgate's auth is a key on every request; provider and upstream are named
# per request by headers (custom host: the same fixed-answer nginx).
start_portkey() { # sets PK_PORT, PK_SID, PK_URL, PK_JSON_HEADERS, PK_SSE_HEADERS
  PK_PORT=$(free_port)
  START_STDOUT=/dev/null start portkey env NODE_ENV=production \
    node "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/build/start-server.js" --port="$PK_PORT" --headless
  PK_SID=$LAST_PID
  PK_JSON_HEADERS=$'x-portkey-provider: openai\nx-portkey-custom-host: '"http://127.0.0.1:$UP_JSON/v1"
  PK_SSE_HEADERS=$'x-portkey-provider: openai\nx-portkey-custom-host: '"http://127.0.0.1:$UP_SSE/v1"
  PK_URL="http://127.0.0.1:$PK_PORT/v1/chat/completions"
  wait_http "http://127.0.0.1:$PK_PORT/" 150 || {
    log "Portkey did not start; the end of its log:"
    tail -20 "$WORK/portkey.log" >&2
    return 1
  }
}

# LiteLLM proxy, one worker, a master key (auth on, as for chatgate), no
# database, offline cost map. Sets LL_PORT, LL_KEY, LL_SID, LL_URL.
start_litellm() {
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
  LL_URL="http://127.0.0.1:$LL_PORT/v1/chat/completions"
  wait_http "http://127.0.0.1:$LL_PORT/health/liveliness" 600 || {
    log "LiteLLM did not start; the end of its log:"
    tail -20 "$WORK/litellm.log" >&2
    return 1
  }
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

  # Overlays (CHATGATE_CONFIG=file, over the config above) for the other rows.
  # Prices: USD budgets need every targeted model priced.
  local prices='[providers.upstream.prices]
"gpt-4o-mini" = { input = 0.15, output = 0.60 }
[providers.upstream_sse.prices]
"gpt-4o-mini" = { input = 0.15, output = 0.60 }'
  # Spend: gateway and key budgets far above the load (counted, never hit).
  local budgets='[budgets]
usd_per_day = 1000000.0
tokens_per_day = 100000000000
[auth.keys.bench]
usd_per_day = 1000000.0'
  printf '%s\n%s\n' "$prices" "$budgets" >"$WORK/spend.toml"
  # Every feature on: spend as above, the response cache (a miss per request
  # when the prompts are unique), three guard rules that never match (so each
  # is run over every input or answer), a canary at 10 % of requests (same
  # upstream), tracing off (the default: no OTLP endpoint).
  cat >"$WORK/features.toml" <<EOF
$prices
$budgets

[cache]
max_entries = 10000
max_bytes = 67108864

[models.default]
cache_ttl = "10m"

[models.default.canary]
targets = ["upstream:gpt-4o-mini"]
percent = 10.0
sticky = "request"

[[guard.rules]]
name = "ignore-previous"
pattern = "(?i)ignore (all )?(previous|prior|above) instructions"
on = "input"
action = "block"

[[guard.rules]]
name = "reveal-prompt"
pattern = "(?i)(reveal|print|show) (your|the) (system )?prompt"
on = "input"
action = "flag"

[[guard.rules]]
name = "card-number"
pattern = "\\\\b(?:\\\\d[ -]?){13,16}\\\\b"
on = "output"
action = "flag"
EOF
  # Idle streams: limits that let 10,000 streams stay open for minutes.
  cat >"$WORK/streams.toml" <<EOF
[server]
max_concurrent_requests = 30000
request_timeout = "900s"

[providers.idle]
kind = "openai"
base_url = "http://127.0.0.1:${UP_IDLE:-1}/v1"
api_key_env = "BENCH_UPSTREAM_KEY"
timeout = "900s"

[models.idle]
targets = ["idle:gpt-4o-mini"]
EOF
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
  BENCH_AUTH=$key BENCH_BODY_FILE=$BODY BENCH_NONCE=$RANDOM$RANDOM wrk -t"$threads" -c"$conc" -d"${secs}s" --timeout 10s \
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
printf 'target\tttfb_p50_us\tttfb_p99_us\ttotal_p50_us\ttotal_p99_us\tn\tcpu_ms_per_stream\n' >"$STREAM_TSV"

# Time to first byte and total of $STREAMS sequential streams over one
# keep-alive connection (one curl process, one line per transfer), and the
# CPU of session $sid per stream. BENCH_HEADERS (one per line) are sent too.
streams() { # label url key body sid
  local label=$1 url=$2 key=$3 body=$4 sid=$5 cfg="$WORK/curl-$1.cfg" n=$STREAMS bad ttfb total
  local before after h hdrs=()
  : >"$cfg"
  for _ in $(seq $((n + 20))); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url" >>"$cfg"; done
  [[ -n $key ]] && hdrs+=(-H "Authorization: Bearer $key")
  while IFS= read -r h; do [[ -n $h ]] && hdrs+=(-H "$h"); done <<<"${BENCH_HEADERS:-}"
  before=$(cpu_ticks "$sid")
  curl -s -K "$cfg" "${hdrs[@]}" -H 'Content-Type: application/json' \
    --data-binary "@$body" -w '%{http_code} %{time_starttransfer} %{time_total}\n' >"$WORK/stream-$label.txt"
  after=$(cpu_ticks "$sid")
  # The first 20 warm the connection and pools; non-200 answers count as failures.
  bad=$(tail -n "$n" "$WORK/stream-$label.txt" | awk '$1 != 200' | wc -l)
  ttfb=$(tail -n "$n" "$WORK/stream-$label.txt" | awk '{printf "%d\n", $2 * 1e6}' | sort -n | pct)
  total=$(tail -n "$n" "$WORK/stream-$label.txt" | awk '{printf "%d\n", $3 * 1e6}' | sort -n | pct)
  printf '%s\t%s\t%s\t%s%s\t%s\n' "$label" "$ttfb" "$total" "$n" "$([[ $bad == 0 ]] || echo " ($bad failed)")" \
    "$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n=$((n + 20)) 'BEGIN {printf "%.4f", t * 1000 / hz / n}')" >>"$STREAM_TSV"
  log "stream $label: $(tail -1 "$STREAM_TSV" | cut -f2- | tr '\t' ' ') (ttfb p50/p99, total p50/p99 us, n, cpu ms/stream)"
}

OPEN_TSV="$WORK/openloop.tsv"
printf 'target\toffered_rps\tachieved_rps\tp50_us\tp99_us\tcpu_ms_per_req\trequests\terrors\n' >"$OPEN_TSV"

# Open loop: oha sends at a fixed rate ($OPEN_RATE/s) on up to 50
# connections whatever the answers do, and --latency-correction counts each
# latency from the request's scheduled send time, so a stall shows as the
# wait it causes (a closed loop would slow down instead and hide it).
openloop() { # label url key sid
  local label=$1 url=$2 key=$3 sid=$4 before after h hdrs=()
  [[ -n $key ]] && hdrs+=(-H "Authorization: Bearer $key")
  while IFS= read -r h; do [[ -n $h ]] && hdrs+=(-H "$h"); done <<<"${BENCH_HEADERS:-}"
  wrk_run "$url" "$key" 50 "$WARMUP" >/dev/null
  before=$(cpu_ticks "$sid")
  "$OHA" --no-tui --output-format json -z "${DURATION}s" -q "$OPEN_RATE" --latency-correction \
    -c 50 -m POST -H 'Content-Type: application/json' "${hdrs[@]}" -D "$BODY" "$url" >"$WORK/oha-$label.json"
  after=$(cpu_ticks "$sid")
  python3 - "$WORK/oha-$label.json" "$label" "$OPEN_RATE" $((after - before)) "$CLK_TCK" >>"$OPEN_TSV" <<'EOF'
import json, sys
path, label, rate, ticks, hz = sys.argv[1:6]
r = json.load(open(path))
codes = r.get("statusCodeDistribution", {})
ok = int(codes.get("200", 0))
n = sum(int(v) for v in codes.values())
# Requests still in flight when -z ends are cancelled ("aborted due to
# deadline"): the end of the run, not a failure of the target.
errors = n - ok + sum(int(v) for k, v in r.get("errorDistribution", {}).items()
                      if k != "aborted due to deadline")
pct = r["latencyPercentiles"]
us = lambda v: int((v or 0) * 1e6)
cpu = int(ticks) * 1000 / int(hz) / max(n, 1)
print(f"{label}\t{rate}\t{r['summary']['requestsPerSec']:.0f}\t{us(pct['p50'])}\t{us(pct['p99'])}\t{cpu:.4f}\t{n}\t{errors}")
EOF
  log "open loop $label: $(tail -1 "$OPEN_TSV" | cut -f2- | tr '\t' ' ') (offered achieved rps, p50 p99 us, cpu ms/req, n, errors)"
}

MEM_TSV="$WORK/memory.tsv"
printf 'state\tvmrss_kb\tnote\n' >"$MEM_TSV"
mem() { # state note
  local kb
  kb=$(rss_kb "$CG_PID")
  printf '%s\t%s\t%s\n' "$1" "$kb" "${2:-}" >>"$MEM_TSV"
  log "RSS $1: $kb kB ${2:-}"
}

# $1 idle streams held open through chatgate (the idle upstream sends one
# event, then nothing): RSS before, with all open, and per stream.
# Each stream holds two sockets in chatgate (client and upstream side): past
# half the open-files limit (hard 20,000 in this VM, which even root may not
# raise) the count is capped, and the row says so.
idle_streams() { # count
  local n=$1 before held kb cap=$((($(ulimit -n) - 100) / 2)) capped=""
  if ((n > cap)); then
    capped=" (asked $n: capped at ($(ulimit -n) open files - 100) / 2)"
    n=$cap
  fi
  before=$(rss_kb "$CG_PID")
  python3 "$HERE/hold_connections.py" --stream 127.0.0.1 "$CG_PORT" /api/v1/chat/completions \
    "$BENCH_KEY" "$IDLE_BODY" "$n" 600 >"$WORK/hold-streams.out" 2>&1 &
  local hold=$!
  STARTED+=("$hold")
  for _ in $(seq 1800); do grep -q READY "$WORK/hold-streams.out" && break; sleep 0.1; done
  held=$(ss -Htn state established "( sport = :$CG_PORT )" | wc -l)
  kb=$(rss_kb "$CG_PID")
  mem "$n-idle-streams" "$(tr -d '\n' <"$WORK/hold-streams.out")$capped; $held established at the server; $(((kb - before) * 1024 / (n > 0 ? n : 1))) bytes per stream over the $((before / 1024)) MB before"
  forget "$hold"
}

SOAK_TSV="$WORK/soak.tsv"
printf 'seconds\tvmrss_kb\n' >"$SOAK_TSV"
# $1 seconds of open-loop load at $SOAK_RATE/s (oha), RSS sampled every 10 s.
soak() { # seconds
  local secs=$1 t=0 oha_pid
  "$OHA" --no-tui --output-format json -z "${secs}s" -q "$SOAK_RATE" -c 20 -m POST \
    -H 'Content-Type: application/json' -H "Authorization: Bearer $BENCH_KEY" -D "$BODY" \
    "$LOAD_URL_CG" >"$WORK/oha-soak.json" &
  oha_pid=$!
  while kill -0 "$oha_pid" 2>/dev/null; do
    printf '%s\t%s\n' "$t" "$(rss_kb "$CG_PID")" >>"$SOAK_TSV"
    for _ in $(seq 100); do kill -0 "$oha_pid" 2>/dev/null || break; sleep 0.1; done
    t=$((t + 10))
  done
  wait "$oha_pid" || true
  printf '%s\t%s\n' "$secs" "$(rss_kb "$CG_PID")" >>"$SOAK_TSV"
  SOAK_SUMMARY=$(python3 - "$WORK/oha-soak.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
codes = r.get("statusCodeDistribution", {})
n, ok = sum(int(v) for v in codes.values()), int(codes.get("200", 0))
print(f"{n} requests, {ok} answered 200, {r['summary']['requestsPerSec']:.0f} req/s")
EOF
)
  log "soak: $SOAK_SUMMARY; RSS $(head -2 "$SOAK_TSV" | tail -1 | cut -f2) -> $(tail -1 "$SOAK_TSV" | cut -f2) kB"
}
