#!/bin/bash
# Issue 25: flash-sale at a fixed offered rate for 10 s, 3 s after start, in a fresh directory:
# p50, p99, the generator's lag, and the layout and wait strategy the node chose.
#   bench/one-engine/rate.sh RATE CONNECTIONS LABEL [surge serve args…]
#   2,000/s:   PIPELINE=128 bench/one-engine/rate.sh 2000 8 default
#   120,000/s: bench/one-engine/rate.sh 120000 2 ckpt
B=${B:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
R=$1; C=$2; L=$3; shift 3
D=/var/tmp/surge-rate-$L; rm -rf $D
$B/surge serve --data-dir $D --listen 127.0.0.1:7650 --http 127.0.0.1:7651 "$@" > $D.log 2>&1 &
P=$!
until curl -sf 127.0.0.1:7651/health >/dev/null 2>&1; do sleep 0.05; done
sleep 3
$B/surge loadgen --server 127.0.0.1:7650 --workload flash-sale --rate $R --duration 10 --warmup 1 \
  --connections $C ${PIPELINE:+--pipeline $PIPELINE} --quiet --json $D.json > $D.txt 2>&1
python3 -c "
import json;d=json.load(open('$D.json'));l=d.get('latency_us') or d.get('overall') or {}
print('$L', round(d['achieved_rate']), 'p50', l.get('p50',0)/1000, 'p99', l.get('p99',0)/1000)"
grep -o "generator lag max [0-9.]* ms" $D.txt
grep -o "wait=[a-z-]* cores=[0-9]* layout=[a-z]*" $D.log
kill $P; wait $P 2>/dev/null; rm -rf $D $D.json $D.log $D.txt
