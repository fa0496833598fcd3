#!/bin/bash
# Issue 25: per-thread CPU of a durable pair (primary, standby, load generator) at saturation,
# on one machine: where a standby's cost goes. Usage: bench/one-engine/pair_cpu.sh
S=${B:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}/surge
W=$(mktemp -d /tmp/paircpu.XXXX)
common=(--set replication.secret=bench --set replication.on_standby_loss=halt)
$S serve --data-dir $W/p --listen 127.0.0.1:7611 --http 127.0.0.1:7811 --set replication.listen=127.0.0.1:7711 --set replication.ack=durable "${common[@]}" 2>$W/p.log &
PP=$!
sleep 0.3
$S standby --data-dir $W/s --listen 127.0.0.1:7612 --http 127.0.0.1:7812 --primary 127.0.0.1:7711 --set replication.ack=durable "${common[@]}" 2>$W/s.log &
SP=$!
for _ in $(seq 100); do curl -s 127.0.0.1:7811/health | grep -q '"standby":"streaming"' && break; sleep 0.1; done
sleep 2
$S loadgen --server 127.0.0.1:7611 --rate max --duration 8 --warmup 1 --connections 4 --pipeline 256 --quiet --json $W/l.json >/dev/null &
LP=$!
snap() { for p in $PP $SP $LP; do for t in /proc/$p/task/*; do c=$(cat $t/comm 2>/dev/null | tr ' ' _); v=$(awk '{print $14+$15}' $t/stat 2>/dev/null); [ -n "$c" ] && [ -n "$v" ] && echo "$p $c $v"; done; done; }
sleep 3; snap > $W/a; sleep 4; snap > $W/b
wait $LP
python3 - $W/a $W/b $PP $SP $LP $W/l.json <<'PY'
import sys, json, collections
a={}; b={}
for f,d in ((sys.argv[1],a),(sys.argv[2],b)):
    for line in open(f):
        p,c,v=line.split(); d[(p,c)]=d.get((p,c),0)+int(v)
names={sys.argv[3]:'primary',sys.argv[4]:'standby',sys.argv[5]:'loadgen'}
tot=collections.Counter()
for k in sorted(b):
    dv=(b[k]-a.get(k,0))/100/4.0
    tot[names[k[0]]]+=dv
    if dv>0.02: print(f"{names[k[0]]:8} {k[1]:20} {dv*100:5.1f}% of a core")
for n,v in tot.items(): print(f"TOTAL {n:8} {v*100:5.1f}%")
d=json.load(open(sys.argv[6])); print("req/s", round(d['achieved_rate']))
PY
kill $PP $SP; wait 2>/dev/null; rm -rf $W
