#!/usr/bin/env bash
# surge against its peers, in one run, with one table: the flash-sale workload from the same
# open-loop generator (`surge loadgen`) against
#   surge           `surge serve` on defaults (journal synced before every answer)
#   redis-always    Redis 7, Lua stock-lock-and-order script by EVALSHA, AOF appendfsync always
#   redis-everysec  the same with appendfsync everysec (up to a second of acknowledged writes
#                   can be lost: shown for scale, not as an equal)
#   postgres        PostgreSQL 15, conditional UPDATE + INSERT in one transaction per
#                   request, synchronous_commit on
# each at a common offered rate that every system sustains, then at saturation (--rate max,
# closed loop). Peers are installed, configured, started and stopped by peers.sh.
#
#   bench/peers/compare.sh   # env: SECONDS_PER_RUN=10 COMMON_RATE=2000 CONNECTIONS=8 PIPELINE=128
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
COMMON_RATE=${COMMON_RATE:-2000}
CONNECTIONS=${CONNECTIONS:-8}
PIPELINE=${PIPELINE:-128}
OUT=${OUT:-target/peers/$(date +%Y%m%d-%H%M%S)}
SURGE_PORT=7651

cargo build --release -q -p tools -p bench --bin surge --bin peer-table
mkdir -p "$OUT"
SURGE=target/release/surge
DATA=$(mktemp -d /tmp/surge-peers-data.XXXXXX)

cleanup() {
    if [ -n "${SURGE_PID:-}" ]; then kill "$SURGE_PID" 2>/dev/null; wait "$SURGE_PID" 2>/dev/null; fi
    bench/peers/peers.sh stop || true
    rm -rf "$DATA"
}
trap cleanup EXIT

bench/peers/peers.sh stop

run() {
    local name=$1 system=$2 server=$3 rate=$4 mode=$5
    echo "== $name at $rate" >&2
    $SURGE loadgen --system "$system" --server "$server" --workload flash-sale --rate "$rate" \
        --duration "$SECONDS_PER_RUN" --warmup 1 --connections "$CONNECTIONS" \
        --pipeline "$PIPELINE" --quiet --json "$OUT/$name-$mode.json" --hgrm "$OUT/$name-$mode" \
        | tee "$OUT/$name-$mode.txt" >&2
}

# Each system runs alone: the common rate first, on a quiet server (before a saturation run
# has grown its journal or AOF), then saturation. Pauses let start-up writes settle.
both() {
    sleep 3
    run "$1" "$2" "$3" "$COMMON_RATE" common
    sleep 2
    run "$1" "$2" "$3" max max
}

$SURGE serve --data-dir "$DATA" --listen 127.0.0.1:$SURGE_PORT --http 127.0.0.1:0 2>"$OUT/surge-serve.log" &
SURGE_PID=$!
for _ in $(seq 100); do grep -q event=serving "$OUT/surge-serve.log" && break; sleep 0.1; done
both surge surge 127.0.0.1:$SURGE_PORT
kill "$SURGE_PID"; wait "$SURGE_PID" || true; SURGE_PID=

for spec in "redis-always redis 127.0.0.1:6391" "redis-everysec redis 127.0.0.1:6392" \
            "postgres postgres 127.0.0.1:5441"; do
    set -- $spec
    bench/peers/peers.sh start "$1" >&2
    both "$1" "$2" "$3"
    bench/peers/peers.sh stop
done

{
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    target/release/peer-table "$OUT" surge redis-always redis-everysec postgres
} | tee "$OUT/table.md"
ln -sfn "$(basename "$OUT")" "$(dirname "$OUT")/last"
