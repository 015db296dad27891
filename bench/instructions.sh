#!/usr/bin/env bash
# bench/instructions.sh — instructions chatgate executes per request, counted
# by valgrind's callgrind: repeatable on a loaded machine (an instruction count
# does not depend on what else runs), so a change can be measured by running
# this before and after it.
#
# One chatgate (the bench config of lib.sh: auth, per-IP and per-key limits,
# info-level JSON logs to /dev/null) runs under callgrind in front of the
# fixed-answer nginx upstream. For JSON answers and then 14-chunk streams it
# warms up, zeroes the counters, sends N requests (one curl, one keep-alive
# connection, sequential), dumps; then sends 2N and dumps again. Per request
# is (I(2N) - I(N)) / N: start-up, warm-up and whatever a phase costs once
# (timers, the dump itself) drop out. Every thread of the process is counted
# (runtime workers, the log writer); the kernel is not (callgrind sees user
# space only), and neither are nginx and curl.
#
# Usage: bench/instructions.sh [binary]   (default target/release/chatgate;
# build it with `cargo build --release` first). Knobs: BENCH_N (default 200);
# BENCH_OVERLAY=spend (prices + budgets) or features (every feature on; the
# body is the same every time, so the cache hits after the first) layers one
# of run.sh's row configs over the bench config.
# With KEEP=dir the callgrind files are kept there: bench/callgrind_top.py
# reads them (per-function shares, callers).
set -euo pipefail
N=${BENCH_N:-200}

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BIN=${1:-$ROOT/target/release/chatgate}
[[ -x $BIN ]] || { echo "no binary at $BIN (cargo build --release)" >&2; exit 1; }
command -v valgrind >/dev/null || apt_install valgrind
install_server nginx-light nginx nginx

write_fixtures
start_upstream
write_chatgate_config

CG_OUT="$WORK/callgrind.out"
OVERLAY=()
[[ -n ${BENCH_OVERLAY:-} ]] && OVERLAY=(CHATGATE_CONFIG="$WORK/$BENCH_OVERLAY.toml")
start chatgate env -u RUST_LOG "${OVERLAY[@]}" APP_ENV=development CHATGATE_CONFIG_DIR="$WORK/config" \
  CHATGATE_BENCH_KEY="$BENCH_KEY" BENCH_UPSTREAM_KEY=sk-upstream-fake \
  valgrind --tool=callgrind --callgrind-out-file="$CG_OUT" "$BIN"
CG_PID=$LAST_PID # `env` execs valgrind, which runs chatgate in this process
START_STDOUT=/dev/null
wait_http "http://127.0.0.1:$CG_PORT/health" 600

# n requests with body $2 over one keep-alive connection; fails unless all are 200.
send() { # n body
  local n=$1 body=$2 cfg="$WORK/curl.cfg" bad
  : >"$cfg"
  for _ in $(seq "$n"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$LOAD_URL_CG" >>"$cfg"; done
  curl -s -K "$cfg" -H "Authorization: Bearer $BENCH_KEY" -H 'Content-Type: application/json' \
    --data-binary "@$body" -w '%{http_code}\n' >"$WORK/codes.txt"
  bad=$(grep -cv '^200$' "$WORK/codes.txt" || true)
  [[ $bad == 0 && $(wc -l <"$WORK/codes.txt") == "$n" ]] || {
    echo "$bad of $n requests failed" >&2
    sort "$WORK/codes.txt" | uniq -c >&2
    return 1
  }
}

# Dumps the counters since the last dump (or zeroing) into file $CG_OUT.<n>
# (callgrind numbers its dumps 1, 2, …) and prints its total.
dump() { # label n
  callgrind_control --dump="$1" "$CG_PID" >/dev/null 2>&1
  awk '/^(totals|summary):/ {print $2; exit}' "$CG_OUT.$2"
}

printf '%-8s %12s %12s %14s\n' kind "I(N)/N" "I(2N)/2N" "per request" >"$WORK/table.txt"
DUMPS=0
for kind in json stream; do
  body=$BODY
  [[ $kind == stream ]] && body=$STREAM_BODY
  send 50 "$body" # warm-up: connections, pools, caches, lazy statics
  callgrind_control --zero "$CG_PID" >/dev/null 2>&1
  send "$N" "$body"
  DUMPS=$((DUMPS + 1))
  one=$(dump "$kind-N" "$DUMPS")
  send $((2 * N)) "$body"
  DUMPS=$((DUMPS + 1))
  two=$(dump "$kind-2N" "$DUMPS")
  awk -v k="$kind" -v n="$N" -v a="$one" -v b="$two" \
    'BEGIN {printf "%-8s %12.0f %12.0f %14.0f\n", k, a / n, b / (2 * n), (b - a) / n}' >>"$WORK/table.txt"
done
forget "$CG_PID"
if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP" && cp "$CG_OUT".* "$KEEP"/; fi
echo "# chatgate instructions per request (callgrind Ir, user space, all threads), N=$N, $(basename "$BIN")${BENCH_OVERLAY:+, overlay $BENCH_OVERLAY}"
cat "$WORK/table.txt"
