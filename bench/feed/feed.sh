#!/usr/bin/env bash
# The feed's cost and speed, in one run on one machine (docs/FEED.md):
#   consumers  a primary and a standby, both keeping a feed, saturated with surge loadgen
#              --rate max (flash-sale), back to back: no feed consumer, a consumer following
#              the standby's feed, a consumer following the primary's. Reports the primary's
#              req/s and p99 and the events/s the consumer received.
#   sink       a sale (rate R for S seconds) fills a feed; then `surge sink postgres
#              --until-caught-up` into an empty PostgreSQL 15 (bench/peers/peers.sh starts
#              it), three times: the rows/s it sustains.
# Usage: bench/feed/feed.sh consumers [seconds] [connections]
#        bench/feed/feed.sh sink [rate] [seconds]
set -euo pipefail
what=${1:-consumers}
root=$(cd "$(dirname "$0")/../.." && pwd)
surge="$root/target/release/surge"
[ -x "$surge" ] || cargo build --release -q -p tools --manifest-path "$root/Cargo.toml"
work=$(mktemp -d /tmp/surge-feed-bench.XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
feed=(--set snapshot.every_secs=10)

metric() { curl -s "127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }

wait_faulted() {
  for log in "$@"; do
    for _ in $(seq 300); do grep -q "event=memory_faulted_in" "$log" && break; sleep 0.1; done
  done
}

consumers() {
  local secs=${1:-5} conns=${2:-4}
  printf "%-18s %12s %8s %14s\n" consumer "req/s" "p99 ms" "events/s"
  for where in none standby primary; do
    rm -rf "$work/p" "$work/s" "$work"/*.log
    "$surge" serve --data-dir "$work/p" --listen 127.0.0.1:7631 --http 127.0.0.1:7831 \
      --set replication.listen=127.0.0.1:7731 --set replication.secret=bench \
      --set 'feed.listen="127.0.0.1:7931"' "${feed[@]}" 2>"$work/p.log" &
    sleep 0.3
    "$surge" standby --data-dir "$work/s" --listen 127.0.0.1:7632 --http 127.0.0.1:7832 \
      --primary 127.0.0.1:7731 --set replication.secret=bench \
      --set 'feed.listen="127.0.0.1:7932"' "${feed[@]}" 2>"$work/s.log" &
    for _ in $(seq 100); do curl -s 127.0.0.1:7831/health | grep -q '"standby":"streaming"' && break; sleep 0.1; done
    wait_faulted "$work/p.log" "$work/s.log"
    local port=""
    case $where in standby) port=7932 ;; primary) port=7931 ;; esac
    if [ -n "$port" ]; then
      "$surge" feed --server 127.0.0.1:$port --follow --json >/dev/null 2>"$work/feed.log" &
      sleep 0.3
    fi
    local http=$(( port == 7931 ? 7831 : 7832 ))
    local sent0; sent0=$(metric $http surge_feed_sent_events_total)
    local t0; t0=$(date +%s.%N)
    "$surge" loadgen --server 127.0.0.1:7631 --rate max --duration "$secs" --warmup 1 \
      --connections "$conns" --pipeline 256 --quiet --json "$work/$where.json" >/dev/null
    local t1; t1=$(date +%s.%N)
    local sent1; sent1=$(metric $http surge_feed_sent_events_total)
    python3 - "$work/$where.json" "$where" "$sent0" "$sent1" "$t0" "$t1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
lat = d.get("latency_us") or {}
where, s0, s1, t0, t1 = sys.argv[2], float(sys.argv[3] or 0), float(sys.argv[4] or 0), float(sys.argv[5]), float(sys.argv[6])
rate = (s1 - s0) / (t1 - t0) if where != "none" else 0
print(f"{where:<18} {d['achieved_rate']:>12,.0f} {lat.get('p99',0)/1000:>8.2f} {rate:>14,.0f}")
PY
    kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
  done
}

sink() {
  local rate=${1:-50000} secs=${2:-10}
  "$root/bench/peers/peers.sh" start postgres >/dev/null
  local dsn="host=127.0.0.1 port=5441 user=postgres dbname=postgres"
  rm -rf "$work/p"
  "$surge" serve --data-dir "$work/p" --listen 127.0.0.1:7631 --http 127.0.0.1:7831 \
    --set 'feed.listen="127.0.0.1:7931"' --set engine.retire_after_ms=1000 "${feed[@]}" 2>"$work/p.log" &
  wait_faulted "$work/p.log"
  "$surge" loadgen --server 127.0.0.1:7631 --rate "$rate" --duration "$secs" --warmup 0 --quiet >/dev/null
  sleep 2
  echo "feed: $(metric 7831 surge_feed_events_total) events, through seq $(metric 7831 surge_feed_through_seq)"
  for run in 1 2 3; do
    psql "$dsn" -qc "DROP TABLE IF EXISTS surge_order_lines, surge_orders, surge_discrepancies, surge_skus, surge_sink_position" >/dev/null
    "$surge" sink postgres --server 127.0.0.1:7931 --dsn "$dsn" --until-caught-up 2>&1 | grep "caught up" | sed "s/^/run $run: /"
  done
}

case $what in
  consumers) shift || true; consumers "$@" ;;
  sink) shift || true; sink "$@" ;;
  *) echo "usage: $0 consumers [seconds] [connections] | sink [rate] [seconds]" >&2; exit 2 ;;
esac
