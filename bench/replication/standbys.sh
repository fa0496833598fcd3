#!/usr/bin/env bash
# Throughput and p99 at saturation with no standby, one, and two, in one run on one machine:
# surge loadgen --rate max against the primary (flash-sale).
#   none              the primary alone (the baseline for the rows below)
#   one-durable       one standby, ack = durable (the pair as before)
#   1-of-2-durable    two durable standbys, sync_standbys = 1
#   2-of-2-durable    two durable standbys, sync_standbys = 2
#   durable+async-dr  one durable standby and one async DR standby (standby_ack.dr = "async")
# Usage: bench/replication/standbys.sh [seconds] [connections] [pipeline]
# SURGE_SET="key=value …" adds --set options to every node.
set -euo pipefail
. "$(dirname "$0")/saturate.sh"
bench_args "$@"
work=$(mktemp -d /tmp/surge-standbys.XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
common=(--set replication.secret=bench --set replication.on_standby_loss=halt
        --set replication.ack=durable --set 'replication.standby_ack.dr="async"')
extra=()
for kv in ${SURGE_SET:-}; do extra+=(--set "$kv"); done
printf "%-18s %14s %10s %10s\n" setup "req/s" "p50 ms" "p99 ms"
for setup in none one-durable 1-of-2-durable 2-of-2-durable durable+async-dr; do
  rm -rf "$work"/p "$work"/s* "$work"/*.log
  case $setup in
    none) names=(); k=1 ;;
    one-durable) names=(b); k=1 ;;
    1-of-2-durable) names=(b c); k=1 ;;
    2-of-2-durable) names=(b c); k=2 ;;
    durable+async-dr) names=(b dr); k=1 ;;
  esac
  replication=()
  [ ${#names[@]} -gt 0 ] && replication=(--set replication.listen=127.0.0.1:7711
    --set replication.node=a --set replication.sync_standbys=$k "${common[@]}")
  "$surge" serve --data-dir "$work/p" --listen 127.0.0.1:7611 --http 127.0.0.1:7811 \
    ${replication[@]+"${replication[@]}"} ${extra[@]+"${extra[@]}"} 2>"$work/p.log" &
  sleep 0.3
  logs=("$work/p.log")
  port=7612
  for name in ${names[@]+"${names[@]}"}; do
    "$surge" standby --data-dir "$work/s-$name" --listen 127.0.0.1:$port --http 127.0.0.1:$((port + 200)) \
      --primary 127.0.0.1:7711 --set replication.node=$name \
      "${common[@]}" ${extra[@]+"${extra[@]}"} 2>"$work/s-$name.log" &
    logs+=("$work/s-$name.log")
    port=$((port + 1))
  done
  want=${#names[@]}
  for _ in $(seq 200); do
    n=$(curl -s 127.0.0.1:7811/health | grep -o '"state":"streaming"' | wc -l || true)
    [ "$n" -ge "$want" ] && break; sleep 0.1
  done
  saturate "$setup" 18 "${logs[@]}"
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
done
