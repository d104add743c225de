#!/usr/bin/env bash
# Source this file: starts a throw-away Redis on a free loopback port and exports
# REDIS_TEST_URL (the scale-out tests run two qclusters on it). Installs Debian's
# redis-server when it is missing. redis_temp_stop shuts it down.

redis_temp_start() {
    if ! command -v redis-server >/dev/null; then
        echo "redis-server not found; installing Debian's redis-server package" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    fi
    REDIS_TEMP_DIR=$(mktemp -d /tmp/cascade-redis.XXXXXX)
    REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
        --dir "$REDIS_TEMP_DIR" --daemonize yes --pidfile "$REDIS_TEMP_DIR/redis.pid" \
        --logfile "$REDIS_TEMP_DIR/redis.log"
    for _ in $(seq 50); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    export REDIS_TEST_URL="redis://127.0.0.1:$REDIS_PORT/0"
    export REDIS_TEMP_DIR
}

redis_temp_stop() {
    if [ -n "${REDIS_TEMP_DIR:-}" ] && [ -f "$REDIS_TEMP_DIR/redis.pid" ]; then
        kill "$(cat "$REDIS_TEMP_DIR/redis.pid")" 2>/dev/null || true
        rm -rf "$REDIS_TEMP_DIR"
    fi
}
