#!/usr/bin/env bash
# Catch-up after a long partition must not stall the primary: a primary and an `async`
# standby, `surge loadgen` offering RATE req/s for 24 s; 4 s in, the standby is frozen
# (SIGSTOP) for SECONDS, then resumed. Prints how far behind it was, how long until the
# primary saw it streaming again, and the load generator's per-second lines around then.
# Usage: bench/replication/catch-up.sh [seconds] [rate]   (after cargo build --release)
set -euo pipefail
secs=${1:-10}; rate=${2:-50000}
root=$(cd "$(dirname "$0")/../.." && pwd)
surge="$root/target/release/surge"
work=$(mktemp -d /tmp/surge-catch-up.XXXX)
trap 'kill -CONT $standby 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
sets=(--set replication.secret=bench --set replication.ack=async)
"$surge" serve --data-dir "$work/p" --listen 127.0.0.1:7631 --http 127.0.0.1:7831 \
  --set replication.listen=127.0.0.1:7731 "${sets[@]}" 2>"$work/p.log" &
sleep 0.5
"$surge" standby --data-dir "$work/s" --listen 127.0.0.1:7632 --http 127.0.0.1:7832 \
  --primary 127.0.0.1:7731 "${sets[@]}" 2>"$work/s.log" &
standby=$!
until grep -q memory_faulted_in "$work/s.log" && grep -q memory_faulted_in "$work/p.log"; do sleep 0.2; done
"$surge" loadgen --server 127.0.0.1:7631 --workload flash-sale --rate "$rate" --duration 24 \
  --connections 4 >"$work/load.txt" 2>&1 &
load=$!
sleep 4
kill -STOP "$standby"
sleep "$secs"
kill -CONT "$standby"
resumed=$(date +%s.%N)
sleep 0.3
until curl -s 127.0.0.1:7831/health | grep -q '"standby":"streaming"'; do sleep 0.05; done
echo "streaming again $(echo "$(date +%s.%N) - $resumed" | bc) s after the standby resumed"
grep -E "event=standby_attached" "$work/p.log" | tail -1 | grep -oE "from_seq=[0-9]+ primary_last_seq=[0-9]+"
wait "$load" || true
tr '\r' '\n' <"$work/load.txt" | grep -E "measure|^achieved"
