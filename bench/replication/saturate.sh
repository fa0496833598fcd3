# Shared by ack-modes.sh and standbys.sh (sourced, not run): their arguments, and measuring
# settled nodes at saturation, one row each.
#
# bench_args [SECONDS] [CONNECTIONS] [PIPELINE]: sets $secs, $conns, $pipeline (defaults 5,
# 4, 256), $root and $surge (the release binary, built when missing).
bench_args() {
  secs=${1:-5}; conns=${2:-4}; pipeline=${3:-256}
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  surge="$root/target/release/surge"
  [ -x "$surge" ] || cargo build --release -q -p tools --manifest-path "$root/Cargo.toml"
}
#
# saturate NAME WIDTH LOG...: wait until every node whose stderr is in LOG... has faulted its
# tables in (each does so in the background after it starts serving, and a run that overlaps
# that measures the faulting), then `surge loadgen --rate max` against 127.0.0.1:7611 for
# $secs with $conns connections × $pipeline in flight, and print NAME, req/s, p50 and p99 (ms).
# Needs $surge, $work, $secs, $conns and $pipeline.
saturate() {
  local name=$1 width=$2 log
  shift 2
  for log in "$@"; do
    for _ in $(seq 300); do grep -q "event=memory_faulted_in" "$log" && break; sleep 0.1; done
  done
  sleep 0.3
  "$surge" loadgen --server 127.0.0.1:7611 --rate max --duration "$secs" --warmup 1 \
    --connections "$conns" --pipeline "$pipeline" --quiet --json "$work/$name.json" >/dev/null
  python3 - "$work/$name.json" "$name" "$width" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
lat = d.get("latency_us") or d.get("overall") or {}
w = int(sys.argv[3])
print(f"{sys.argv[2]:<{w}} {d['achieved_rate']:>14,.0f} {lat.get('p50',0)/1000:>10.2f} {lat.get('p99',0)/1000:>10.2f}")
PY
}
