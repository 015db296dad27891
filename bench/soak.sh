#!/usr/bin/env bash
# bench/soak.sh SECONDS — chatgate alone under an open-loop $BENCH_SOAK_RATE
# req/s (default 1,000) for SECONDS (10..7200), its VmRSS every 10 s: the
# long soak without the rest of bench/run.sh (which also takes --soak).
# Memory, not CPU, is what it measures, so it does not wait for a quiet
# machine; the report says how busy the machine was.
#
#   BENCH_CHATGATE_BIN=target/release/chatgate bench/soak.sh 3600
set -euo pipefail
SOAK=${1:-}
[[ $SOAK =~ ^[0-9]+$ && $SOAK -ge 10 && $SOAK -le 7200 ]] || { echo "usage: bench/soak.sh SECONDS (10..7200)" >&2; exit 2; }
SOAK_RATE=${BENCH_SOAK_RATE:-1000}

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_tools
CHATGATE_BIN=${BENCH_CHATGATE_BIN:-$ROOT/target/release/chatgate}
[[ -x $CHATGATE_BIN ]] || (cd "$ROOT" && cargo build --release -q)
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)

write_fixtures
start_upstream
write_chatgate_config
start_chatgate "$CHATGATE_BIN"
sleep 1
mem idle "fresh start, before any request"
soak "$SOAK"
mem after-soak "after the soak"

mkdir -p "$RESULTS"
STAMP=$(date +%Y%m%d-%H%M%S)
REPORT="$RESULTS/$STAMP-soak.md"
{
  echo "# chatgate soak $STAMP"
  echo
  echo "- machine: $(nproc) cores; load average at start $LOAD_AT_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- commit: $COMMIT; binary: ${CHATGATE_BIN#"$ROOT"/}; config: bench/run.sh's plain path (auth, per-IP and per-key limits, info request logs, metrics)"
  echo "- load: oha $OHA_VERSION, ${SOAK_RATE} req/s offered, 20 connections, ${SOAK}s; $SOAK_SUMMARY"
  echo
  echo "| seconds | RSS MB |"
  echo "|---:|---:|"
  awk -F'\t' 'NR > 1 && ($1 % 300 == 0 || $1 < 60) {printf "| %d | %.1f |\n", $1, $2 / 1024}' "$SOAK_TSV"
  echo
  awk -F'\t' 'NR > 1 {if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2; last = $2}
    END {printf "Every 10 s sample: min %.1f MB, max %.1f MB, last %.1f MB (all samples: %s).\n", min / 1024, max / 1024, last / 1024, FILENAME}' "$SOAK_TSV" |
    sed "s|$SOAK_TSV|bench/results/$STAMP-soak.tsv|"
} >"$REPORT"
cp "$SOAK_TSV" "$RESULTS/$STAMP-soak.tsv"
cat "$REPORT"
