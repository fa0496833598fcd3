#!/usr/bin/env bash
# Throughput and p99 at saturation with no standby, then with a standby in each ack mode,
# in one run on one machine: surge loadgen --rate max against the primary (flash-sale).
# Usage: bench/replication/ack-modes.sh [seconds] [connections] [pipeline]
# SURGE_SET="key=value …" adds --set options to both nodes (e.g. snapshot.every_records=0
# snapshot.every_secs=0 to see what the snapshotters cost). RTT_MS=N puts the replication link
# behind target/release/delay-proxy, N/2 ms each way (this VM's kernel has no tc netem).
set -euo pipefail
. "$(dirname "$0")/saturate.sh"
bench_args "$@"
rtt_ms=${RTT_MS:-0}
proxy="$root/target/release/delay-proxy"
if [ "$rtt_ms" -gt 0 ] && [ ! -x "$proxy" ]; then
  cargo build --release -q -p bench --bin delay-proxy --manifest-path "$root/Cargo.toml"
fi
work=$(mktemp -d /tmp/surge-ack-modes.XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
common=(--set replication.secret=bench --set replication.on_standby_loss=halt)
extra=()
for kv in ${SURGE_SET:-}; do extra+=(--set "$kv"); done
printf "%-10s %14s %10s %10s\n" mode "req/s" "p50 ms" "p99 ms"
for mode in none async received durable; do
  rm -rf "$work/p" "$work/s" "$work"/*.log
  standby_log=""
  if [ "$mode" = none ]; then
    "$surge" serve --data-dir "$work/p" --listen 127.0.0.1:7611 --http 127.0.0.1:7811 ${extra[@]+"${extra[@]}"} 2>"$work/p.log" &
  else
    "$surge" serve --data-dir "$work/p" --listen 127.0.0.1:7611 --http 127.0.0.1:7811 \
      --set replication.listen=127.0.0.1:7711 --set replication.ack=$mode "${common[@]}" ${extra[@]+"${extra[@]}"} 2>"$work/p.log" &
    sleep 0.3
    upstream=127.0.0.1:7711
    if [ "$rtt_ms" -gt 0 ]; then
      "$proxy" --listen 127.0.0.1:7721 --to 127.0.0.1:7711 --one-way-ms $((rtt_ms / 2)) 2>/dev/null &
      upstream=127.0.0.1:7721
      sleep 0.2
    fi
    "$surge" standby --data-dir "$work/s" --listen 127.0.0.1:7612 --http 127.0.0.1:7812 \
      --primary "$upstream" --set replication.ack=$mode "${common[@]}" ${extra[@]+"${extra[@]}"} 2>"$work/s.log" &
    standby_log="$work/s.log"
    for _ in $(seq 100); do curl -s 127.0.0.1:7811/health | grep -q '"standby":"streaming"' && break; sleep 0.1; done
  fi
  saturate "$mode" 10 "$work/p.log" ${standby_log:+"$standby_log"}
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
done
