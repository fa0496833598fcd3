#!/bin/bash
# Issue 25: flash-sale at 120,000/s for 10 s on two connections, 3 s after start; p50, p99 and
# the generator's lag. Usage: bench/one-engine/r120.sh LABEL [surge serve args…]
B=${B:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
L=$1; shift
D=/var/tmp/surge-r120-$L; rm -rf $D
$B/surge serve --data-dir $D --listen 127.0.0.1:7650 --http 127.0.0.1:7651 "$@" > $D.log 2>&1 &
P=$!
until curl -sf 127.0.0.1:7651/health >/dev/null 2>&1; do sleep 0.05; done
sleep 3
$B/surge loadgen --server 127.0.0.1:7650 --workload flash-sale --rate 120000 --duration 10 --warmup 1 --connections 2 --quiet --json $D.json > $D.txt 2>&1
python3 -c "
import json;d=json.load(open('$D.json'));l=d.get('latency_us') or d.get('overall') or {}
print('$L', round(d['achieved_rate']), 'p50', l.get('p50',0)/1000, 'p99', l.get('p99',0)/1000, 'lag_max_ms', d.get('generator_lag_max_ms', d.get('lag_max_ms','?')))"
grep -o "generator lag max [0-9.]* ms" $D.txt
kill $P; wait $P 2>/dev/null; rm -rf $D $D.json $D.log $D.txt
