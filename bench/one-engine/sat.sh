#!/bin/bash
# Issue 25: saturation in a fresh directory: serve-pipelined 4 connections × 256 in flight, W s
# untimed (2) then S s measured (5); checkpoint bytes, RSS and the checkpoint pauses.
# Usage: bench/one-engine/sat.sh LABEL [surge serve args…]
B=${B:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
L=$1; shift
D=/var/tmp/surge-sat-$L; rm -rf $D
$B/surge serve --data-dir $D --listen 127.0.0.1:7640 --http 127.0.0.1:7641 "$@" > $D.log 2>&1 &
P=$!
until curl -sf 127.0.0.1:7641/health >/dev/null 2>&1; do sleep 0.05; done
[ "${W:-2}" = 0 ] || $B/serve-pipelined --server 127.0.0.1:7640 --connections 4 --window 256 --seconds ${W:-2} >/dev/null 2>&1
S0=$(curl -s 127.0.0.1:7641/metrics | awk '/^surge_checkpoint_written_bytes_total /{c=$2} /^surge_snapshot_bytes /{s=$2} /^surge_snapshots_total /{n=$2} END{print c+0, s+0, n+0}')
R=$($B/serve-pipelined --server 127.0.0.1:7640 --connections 4 --window 256 --seconds ${S:-5} 2>&1 | grep "orders/s" | sed "s/.*= //; s/ (.*//")
M=$(curl -s 127.0.0.1:7641/metrics)
S1=$(echo "$M" | awk '/^surge_checkpoint_written_bytes_total /{c=$2} /^surge_snapshot_bytes /{s=$2} /^surge_snapshots_total /{n=$2} END{print c+0, s+0, n+0}')
RSS=$(grep VmRSS /proc/$P/status | awk '{print $2}')
echo "$L | $R | ckpt_bytes,snap_bytes,snaps before: $S0 after: $S1 | rss_kb=$RSS"
echo "$M" | grep -E "^surge_checkpoint_(cut|step)_seconds_(sum|count)|^surge_checkpoints_total|^surge_snapshot_engine_pause_seconds_(sum|count)" | tr '\n' ' '; echo
kill $P; wait $P 2>/dev/null; rm -rf $D
