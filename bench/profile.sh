#!/usr/bin/env bash
# bench/profile.sh — where chatgate's CPU goes under load: the c=50 run of
# bench/run.sh (JSON answers, then streams) with chatgate sampled by `perf
# record -e cpu-clock` (a software clock: works where hardware counters are
# not exposed, e.g. in VMs), or by valgrind's callgrind where perf cannot
# record at all. Writes bench/results/profile-<stamp>.txt.
#
# The binary is a release build with symbols and frame pointers, in its own
# target dir (target/profiling), so target/release stays the shipped build.
# Knobs: BENCH_DURATION (s per profiled run, default 10).
set -euo pipefail
DURATION=${BENCH_DURATION:-10}

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_tools
command -v perf >/dev/null || command -v valgrind >/dev/null || apt_install linux-perf valgrind

log "building a release binary with symbols and frame pointers (target/profiling)"
(cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/profiling" CARGO_PROFILE_RELEASE_STRIP=false \
  CARGO_PROFILE_RELEASE_DEBUG=line-tables-only RUSTFLAGS="-C force-frame-pointers=yes" \
  cargo build --release -q)
BIN="$ROOT/target/profiling/release/chatgate"

write_fixtures
start_upstream
write_chatgate_config
mkdir -p "$RESULTS"
OUT="$RESULTS/profile-$(date +%Y%m%d-%H%M%S).txt"

perf_works() { perf record -e cpu-clock -o "$WORK/probe.data" -- true >/dev/null 2>&1; }

# Reports one perf.data: where the time goes by binary (kernel, chatgate,
# libc), self time by function, then inclusive time of chatgate's functions.
report() { # title data
  local rep=(perf report -i "$2" --stdio -g none)
  {
    echo "=================== $1: self time by thread, then by shared object"
    "${rep[@]}" --no-children --sort comm 2>/dev/null | grep '%' | grep -v '^#' | sed -n 1,8p
    "${rep[@]}" --no-children --sort dso 2>/dev/null | grep '%' | grep -v '^#' | sed -n 1,8p
    echo
    echo "=================== $1: share of samples by part of the request (bench/components.awk)"
    perf script -i "$2" -F comm,ip,sym,dso 2>/dev/null | awk -f "$HERE/components.awk"
    echo
    echo "=================== $1: self time by function (top 50)"
    "${rep[@]}" --no-children --sort dso,symbol 2>/dev/null | grep '%' | grep -v '^#' | sed -n 1,50p
    echo
    echo "=================== $1: inclusive time of chatgate's own functions (top 40)"
    "${rep[@]}" --children --sort symbol 2>/dev/null | grep '%' | grep -v '^#' |
      grep -E 'chatgate::|<chatgate' | sed -n 1,40p
    echo
  } | sed -E 's/ +- +- *$//; s/ +$//' >>"$OUT"
}

profile_perf() { # title body-file
  local title=$1 body=$2 data="$WORK/$1.data" before after out
  BODY=$body wrk_run "$LOAD_URL_CG" "$BENCH_KEY" 50 "$WARMUP" >/dev/null
  before=$(cpu_ticks "$CG_PID")
  perf record -e cpu-clock -F 4000 --call-graph fp -o "$data" -p "$CG_PID" -- sleep "$DURATION" >/dev/null 2>&1 &
  local perf_pid=$!
  out=$(BODY=$body wrk_run "$LOAD_URL_CG" "$BENCH_KEY" 50 "$DURATION")
  wait "$perf_pid" || true
  after=$(cpu_ticks "$CG_PID")
  echo "$title: $(field requests "$out") requests in ${DURATION}s at c=50, $(awk -v c=$((after - before)) -v hz="$CLK_TCK" -v r="$(field requests "$out")" 'BEGIN {printf "%.4f", c * 1000 / hz / r}') CPU ms/request (perf attached, so a little above run.sh's figure)" >>"$OUT"
  report "$title" "$data"
  cp "$data" "${OUT%.txt}-$title.data" # for `perf report -i` by hand
}

# Syscalls, context switches and migrations per request (tracepoints and
# software events: no hardware counters needed).
SYSCALL_EVENTS="raw_syscalls:sys_enter,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_sched_yield,syscalls:sys_enter_getrandom,context-switches,cpu-migrations"
count_syscalls() { # title body-file
  local title=$1 body=$2 out
  BODY=$body wrk_run "$LOAD_URL_CG" "$BENCH_KEY" 50 "$WARMUP" >/dev/null
  perf stat -x, -e "$SYSCALL_EVENTS" -o "$WORK/$title.stat" -p "$CG_PID" -- sleep "$DURATION" >/dev/null 2>&1 &
  local perf_pid=$!
  out=$(BODY=$body wrk_run "$LOAD_URL_CG" "$BENCH_KEY" 50 "$DURATION")
  wait "$perf_pid" || true
  {
    echo "=================== $title: per request at c=50 ($(field requests "$out") requests)"
    awk -F, -v r="$(field requests "$out")" '$1 ~ /^[0-9]+$/ {printf "  %-32s %8.2f\n", $3, $1 / r}' "$WORK/$title.stat"
    echo
  } | sed -E 's/ +- +- *$//; s/ +$//' >>"$OUT"
}

if perf_works; then
  echo "# chatgate CPU profile, perf record -e cpu-clock -F 4000 --call-graph fp, c=50 (wrk), $(nproc) cores" >"$OUT"
  start_chatgate "$BIN"
  count_syscalls json "$BODY"
  count_syscalls stream "$STREAM_BODY"
  profile_perf json "$BODY"
  profile_perf stream "$STREAM_BODY"
else
  # perf cannot sample here: count instructions with callgrind over a short run.
  echo "# chatgate CPU profile, valgrind --tool=callgrind (perf record unavailable), c=8" >"$OUT"
  start chatgate env -u RUST_LOG APP_ENV=development CHATGATE_CONFIG_DIR="$WORK/config" \
    CHATGATE_BENCH_KEY="$BENCH_KEY" BENCH_UPSTREAM_KEY=sk-upstream-fake \
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" "$BIN"
  CG_PID=$LAST_PID
  wait_http "http://127.0.0.1:$CG_PORT/health" 600
  wrk_run "$LOAD_URL_CG" "$BENCH_KEY" 8 "$DURATION" >>"$OUT"
  forget "$CG_PID"
  callgrind_annotate --inclusive=no "$WORK/callgrind.out" 2>/dev/null | head -60 >>"$OUT"
  callgrind_annotate --inclusive=yes "$WORK/callgrind.out" 2>/dev/null | grep chatgate | head -40 >>"$OUT"
fi
cat "$OUT"
log "written to ${OUT#"$ROOT"/}"
