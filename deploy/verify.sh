#!/usr/bin/env bash
# Check the deployment files with the real tools: the systemd units (every
# deploy/systemd/*.service: surge.service, the primary; surge-standby.service, the hot
# standby; surge-sink.service, the order-history sink) with `systemd-analyze verify` (pointed at a built surge binary, since verify
# checks that ExecStart exists) and the Prometheus alert rules with `promtool check rules`
# and their unit test (`promtool test rules`: the limit alert fires past 80%).
# Any warning fails. Usage: deploy/verify.sh [path/to/surge]
set -euo pipefail
cd "$(dirname "$0")/.."
surge="$(realpath "${1:-target/debug/surge}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for unit in deploy/systemd/*.service; do
    sed "s#/usr/local/bin/surge#$surge#" "$unit" > "$work/$(basename "$unit")"
    out="$(systemd-analyze verify "$work/$(basename "$unit")" 2>&1 || true)"
    if [ -n "$out" ]; then
        echo "systemd-analyze verify $unit:"; echo "$out"; exit 1
    fi
    echo "ok   $unit"
done

promtool check rules deploy/prometheus/surge-alerts.yml
promtool test rules deploy/prometheus/surge-alerts.test.yml
