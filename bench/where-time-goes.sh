#!/usr/bin/env bash
# Where the time goes at saturation: a fresh `surge serve`, the load generator at --rate max,
# and around the run the server's per-thread CPU time (from /proc: gateway, journaler,
# engine, …), the load generator's CPU time, and the journal's counters from /metrics
# (group commits, records per commit, time spent writing + syncing).
#
#   bench/where-time-goes.sh          # env: SECONDS_PER_RUN=10 CONNECTIONS=8 PIPELINE=128
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONNECTIONS=${CONNECTIONS:-8}
PIPELINE=${PIPELINE:-128}
cargo build --release -q -p tools --bin surge
SURGE=target/release/surge
DATA=$(mktemp -d /tmp/surge-where.XXXXXX)
LOG=$DATA/serve.log
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT

$SURGE serve --data-dir "$DATA/data" --listen 127.0.0.1:0 --http 127.0.0.1:0 2>"$LOG" &
PID=$!
for _ in $(seq 100); do grep -q event=serving "$LOG" && break; sleep 0.1; done
LISTEN=$(grep -o 'listen=[^ ]*' "$LOG" | head -1 | cut -d= -f2)
HTTP=$(grep -o 'http=[^ ]*' "$LOG" | head -1 | cut -d= -f2)
TICK=$(getconf CLK_TCK)

threads() { # name utime+stime (ticks) per thread of the server
    for t in /proc/$PID/task/*; do
        awk -v name="$(cat "$t/comm")" '{ print name, $14 + $15 }' "$t/stat"
    done | sort
}
metric() { curl -s "http://$HTTP/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

threads >"$DATA/before"
C0=$(metric surge_journal_commits_total); R0=$(metric surge_journal_records_total)
S0=$(metric surge_journal_sync_seconds_sum)
START=$(date +%s.%N)
/usr/bin/time -f "%U %S" -o "$DATA/loadgen.time" $SURGE loadgen --server "$LISTEN" \
    --workload flash-sale --rate max --duration "$SECONDS_PER_RUN" --warmup 1 \
    --connections "$CONNECTIONS" --pipeline "$PIPELINE" --quiet | sed -n 2p
WALL=$(echo "$(date +%s.%N) - $START" | bc)
threads >"$DATA/after"
C1=$(metric surge_journal_commits_total); R1=$(metric surge_journal_records_total)
S1=$(metric surge_journal_sync_seconds_sum)

echo
printf "wall %.1f s (warm-up included)\n\n" "$WALL"
echo "server thread          CPU s   share of wall"
join "$DATA/before" "$DATA/after" | awk -v tick="$TICK" -v wall="$WALL" \
    '{ s = ($3 - $2) / tick; if (s > 0.05) printf "%-20s %7.2f   %5.1f%%\n", $1, s, 100 * s / wall }'
read -r LU LS <"$DATA/loadgen.time"
printf "%-20s %7.2f   %5.1f%%\n" "loadgen (all)" "$(echo "$LU + $LS" | bc)" \
    "$(echo "100 * ($LU + $LS) / $WALL" | bc -l)"
echo
awk -v c="$((C1 - C0))" -v r="$((R1 - R0))" -v s="$(echo "$S1 - $S0" | bc -l)" -v wall="$WALL" \
    'BEGIN { printf "journal: %d group commits, %.0f records each, %.0f µs each to write + sync, %.1f s syncing (%.0f%% of wall)\n", c, r / c, 1e6 * s / c, s, 100 * s / wall }'
