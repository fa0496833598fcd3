#!/usr/bin/env bash
# The feed's cost and speed, in one run on one machine (docs/FEED.md):
#   consumers  a primary and a standby, both keeping a feed, saturated with surge loadgen
#              --rate max (flash-sale), back to back: no feed consumer, a consumer following
#              the standby's feed, a consumer following the primary's (`surge feed --count`:
#              it reads every frame and formats nothing, so the consumer's own CPU is small).
#              Reports the primary's req/s and p99 and the events/s the consumer received.
#              ROUNDS=N repeats the three back to back N times (this VM is noisy).
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
  printf "%-10s %10s %8s %12s %12s %12s %14s\n" consumer "req/s" "p99 ms" "written/s" "sent/s" "feed behind" "caught up in"
  for round in $(seq "${ROUNDS:-1}"); do
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
      "$surge" feed --server 127.0.0.1:$port --follow --count >/dev/null 2>"$work/feed.log" &
      sleep 0.3
    fi
    local http=$(( port == 7931 ? 7831 : 7832 ))
    local sent0; sent0=$(metric $http surge_feed_sent_events_total)
    local wrote0; wrote0=$(metric $http surge_feed_events_total)
    local t0; t0=$(date +%s.%N)
    "$surge" loadgen --server 127.0.0.1:7631 --rate max --duration "$secs" --warmup 1 \
      --connections "$conns" --pipeline 256 --quiet --json "$work/$where.json" >/dev/null
    local t1; t1=$(date +%s.%N)
    local sent1; sent1=$(metric $http surge_feed_sent_events_total)
    local wrote1; wrote1=$(metric $http surge_feed_events_total)
    # How far the feed was behind the journal when the load stopped, and how long it took
    # to catch up (the feed is written at low priority: under saturation it lags, by design).
    local behind; behind=$(( $(metric $http surge_release_bound_seq) - $(metric $http surge_feed_through_seq) ))
    local caught=0
    for i in $(seq 600); do
      [ "$(metric $http surge_feed_through_seq)" -ge "$(metric $http surge_release_bound_seq)" ] && { caught=$i; break; }
      sleep 0.05
    done
    python3 - "$work/$where.json" "$where" "$sent0" "$sent1" "$t0" "$t1" "$wrote0" "$wrote1" "$behind" "$caught" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
lat = d.get("latency_us") or {}
where = sys.argv[2]
s0, s1, t0, t1, w0, w1 = (float(x or 0) for x in sys.argv[3:9])
sent = (s1 - s0) / (t1 - t0) if where != "none" else 0
wrote = (w1 - w0) / (t1 - t0)
caught = f"{int(sys.argv[10]) * 0.05:.2f} s"
print(f"{where:<10} {d['achieved_rate']:>10,.0f} {lat.get('p99',0)/1000:>8.2f} {wrote:>12,.0f} {sent:>12,.0f} {int(sys.argv[9]):>12,} {caught:>14}")
PY
    kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
  done
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
    PGOPTIONS="-c client_min_messages=warning" psql "$dsn" -qc "DROP TABLE IF EXISTS surge_order_lines, surge_orders, surge_discrepancies, surge_skus, surge_sink_position" >/dev/null
    # The sink's own CPU beside its wall time: what is left is PostgreSQL's (and surge's).
    /usr/bin/time -f "%U %S" -o "$work/sink.time" "$surge" sink postgres --server 127.0.0.1:7931 \
      --dsn "$dsn" --until-caught-up 2>&1 | grep "caught up" | sed "s/^/run $run: /"
    echo "       sink CPU: $(awk '{ printf "%.1f s user + %.1f s sys", $1, $2 }' "$work/sink.time")"
  done
}

case $what in
  consumers) shift || true; consumers "$@" ;;
  sink) shift || true; sink "$@" ;;
  *) echo "usage: $0 consumers [seconds] [connections] | sink [rate] [seconds]" >&2; exit 2 ;;
esac
