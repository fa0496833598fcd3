#!/usr/bin/env bash
# Start, stop or inspect the peers surge is compared with, on loopback, each with its own
# data directory under $SURGE_PEERS_DIR (default /tmp/surge-peers):
#   redis-always    Redis 7, AOF on, appendfsync always    127.0.0.1:6391
#   redis-everysec  Redis 7, AOF on, appendfsync everysec  127.0.0.1:6392
#   postgres        PostgreSQL 15, fsync on, synchronous_commit on, trust on loopback
#                                                          127.0.0.1:5441
# Installs the Debian packages it needs (redis-server, postgresql) when they are missing.
#
#   bench/peers/peers.sh start [redis-always | redis-everysec | postgres] | stop | status
# (start with no name starts all three; compare.sh starts one at a time, so that an idle peer's
# background writes never share the disk with the system being measured)
set -euo pipefail

DIR=${SURGE_PEERS_DIR:-/tmp/surge-peers}
REDIS_ALWAYS_PORT=6391
REDIS_EVERYSEC_PORT=6392
PG_PORT=5441
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    [ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}" >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Run a command as the postgres user (PostgreSQL refuses to run as root).
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_redis() {
    local name=$1 port=$2 fsync=$3
    mkdir -p "$DIR/$name"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$DIR/$name" \
        --appendonly yes --appendfsync "$fsync" --save '' \
        --daemonize yes --pidfile "$DIR/$name/redis.pid" --logfile "$DIR/$name/redis.log"
    for _ in $(seq 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "redis on $port did not start; see $DIR/$name/redis.log" >&2
    return 1
}

start_postgres() {
    local data="$DIR/postgres"
    if [ ! -f "$data/PG_VERSION" ]; then
        mkdir -p "$data"
        [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR" "$data"
        as_pg "$PG_BIN/initdb" -D "$data" -U postgres -A trust >/dev/null
        cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$data'
fsync = on
synchronous_commit = on
max_connections = 200
shared_buffers = 1GB
CONF
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w start >/dev/null
}

stop_all() {
    for name in redis-always redis-everysec; do
        if [ -f "$DIR/$name/redis.pid" ]; then
            kill "$(cat "$DIR/$name/redis.pid")" 2>/dev/null || true
            rm -f "$DIR/$name/redis.pid"
        fi
    done
    if [ -f "$DIR/postgres/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$DIR/postgres" -m fast -w stop >/dev/null || true
    fi
}

case "${1:-}" in
start)
    install
    mkdir -p "$DIR"
    stop_all
    case "${2:-all}" in
    redis-always) start_redis redis-always $REDIS_ALWAYS_PORT always ;;
    redis-everysec) start_redis redis-everysec $REDIS_EVERYSEC_PORT everysec ;;
    postgres) start_postgres ;;
    all)
        start_redis redis-always $REDIS_ALWAYS_PORT always
        start_redis redis-everysec $REDIS_EVERYSEC_PORT everysec
        start_postgres
        ;;
    *) echo "unknown peer ${2}" >&2; exit 2 ;;
    esac
    echo "redis-always 127.0.0.1:$REDIS_ALWAYS_PORT  redis-everysec 127.0.0.1:$REDIS_EVERYSEC_PORT  postgres 127.0.0.1:$PG_PORT"
    ;;
stop)
    stop_all
    ;;
status)
    redis-cli -p $REDIS_ALWAYS_PORT config get appendfsync | tr '\n' ' '; echo
    redis-cli -p $REDIS_EVERYSEC_PORT config get appendfsync | tr '\n' ' '; echo
    psql -h 127.0.0.1 -p $PG_PORT -U postgres -Atc "select version(); show synchronous_commit; show fsync"
    ;;
*)
    echo "usage: $0 start [redis-always | redis-everysec | postgres] | stop | status" >&2
    exit 2
    ;;
esac
