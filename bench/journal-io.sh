#!/usr/bin/env bash
# The journal's write paths in the server, interleaved: `surge serve` (fresh data directory,
# snapshots on) with journal.io = "direct" and with buffered commits in flight, under
#   lat: surge loadgen --workload flash-sale --rate 120000 --connections 4 --duration 10
#   sat: serve-pipelined --connections 4 --window 256 --seconds 3 (snapshots off)
# usage: [SNAPSHOTS=off] [SURGE_SET="key=value …"] bench/journal-io.sh lat|sat [rounds]
# (after cargo build --release; SURGE_SET goes to both servers)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-lat}
rounds=${2:-3}
bin=target/release
dir=$(mktemp -d /var/tmp/surge-journal-io.XXXXXX)
trap 'kill $server 2>/dev/null || true; rm -rf "$dir"' EXIT
for round in $(seq 1 "$rounds"); do
    for io in direct buffered; do
        rm -rf "$dir/data"
        sets=()
        [ "$io" = direct ] && sets+=(--set 'journal.io="direct"') || sets+=(--set 'journal.io="pwritev2"')
        for set in ${SURGE_SET:-}; do sets+=(--set "$set"); done
        if [ "$what" = sat ] || [ "${SNAPSHOTS:-on}" = off ]; then
            sets+=(--set snapshot.every_records=0 --set snapshot.every_secs=0)
        fi
        "$bin/surge" serve --data-dir "$dir/data" --listen 127.0.0.1:7620 --http 127.0.0.1:7690 \
            "${sets[@]}" 2>"$dir/serve.log" &
        server=$!
        until grep -q event=serving "$dir/serve.log" && grep -q memory_faulted_in "$dir/serve.log"; do
            kill -0 "$server" 2>/dev/null || { cat "$dir/serve.log" >&2; exit 1; }
            sleep 0.1
        done
        if [ "$what" = lat ]; then
            "$bin/surge" loadgen --server 127.0.0.1:7620 --workload flash-sale --rate 120000 \
                --connections 4 --duration 10 --quiet --json "$dir/lat.json" >/dev/null
            python3 - "$round" "$io" "$dir/lat.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[3])); l = j["latency_us"]
print("round=%s io=%s achieved=%.0f p50=%sus p99=%sus p99.9=%sus max=%sus generator_late_max=%sus"
      % (sys.argv[1], sys.argv[2], j["achieved_rate"], l["p50"], l["p99"], l["p99.9"], l["max"],
         j["sender_lag_max_us"]))
PY
        else
            "$bin/serve-pipelined" --server 127.0.0.1:7620 --connections 4 --window 256 \
                --seconds 3 >"$dir/sat.txt" 2>&1 || true
            echo "round=$round io=$io $(grep -o '[0-9]* orders/s' "$dir/sat.txt" || cat "$dir/sat.txt")"
        fi
        kill "$server"; wait "$server" 2>/dev/null || true
    done
done
