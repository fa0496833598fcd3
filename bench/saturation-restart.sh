#!/bin/bash
# 60 s at saturation, then SIGKILL and a timed restart: the issue-14 "before and after".
# surge serve on its defaults in a fresh directory; surge loadgen --workload mixed --rate max
# --connections 4 --pipeline 256 --duration 60; RSS and data-dir size every 10 s; then
# SIGKILL, restart, and the seconds until /health answers 200.
#
# usage: bench/saturation-restart.sh [BINDIR (target/release)] [LABEL] [surge serve args…]
set -euo pipefail
B=${1:-target/release}; L=${2:-run}; shift $(( $# > 2 ? 2 : $# ))
D=${SURGE_BENCH_DIR:-/var/tmp}/surge-saturation-$L
rm -rf "$D"
"$B/surge" serve --data-dir "$D" --listen 127.0.0.1:7630 --http 127.0.0.1:7631 "$@" >"$D.serve.log" 2>&1 &
P=$!
until curl -sf 127.0.0.1:7631/health >/dev/null 2>&1; do sleep 0.05; done
rss() { grep VmRSS /proc/$P/status | awk '{print $2}'; }
echo "$L serving: rss_kb=$(rss)"
"$B/surge" loadgen --server 127.0.0.1:7630 --workload mixed --rate max --connections 4 \
  --pipeline 256 --duration 60 --quiet >"$D.loadgen.txt" 2>&1 &
G=$!
for t in 10 20 30 40 50 60; do
  sleep 10
  echo "$L t=${t}s rss_kb=$(rss) disk_mb=$(du -sm "$D" | cut -f1)"
done
wait $G
grep -E "^achieved|^all " "$D.loadgen.txt"
kill -9 $P; wait $P 2>/dev/null || true
S=$(date +%s.%N)
"$B/surge" serve --data-dir "$D" --listen 127.0.0.1:7630 --http 127.0.0.1:7631 "$@" >"$D.restart.log" 2>&1 &
P=$!
until curl -sf 127.0.0.1:7631/health >/dev/null 2>&1; do sleep 0.05; done
echo "$L restart_s=$(echo "$(date +%s.%N) - $S" | bc)"
grep -o 'event=recovered.*' "$D.restart.log" | head -1
kill $P; wait $P 2>/dev/null || true
rm -rf "$D" "$D".*
