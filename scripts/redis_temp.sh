#!/usr/bin/env bash
# Source this file: starts a throw-away Redis on a free loopback port and exports
# REDIS_TEST_URL (the scale-out tests run two qclusters on it). Installs Debian's
# redis-server when it is missing. redis_temp_stop shuts it down and removes it.
#
# A preset REDIS_PORT and REDIS_TEMP_DIR are kept, so that redis_temp_halt then
# redis_temp_start restarts the server on the same port with nothing kept (no
# persistence): bench.chaos does that to restart the broker under load.

redis_temp_start() {
    if ! command -v redis-server >/dev/null; then
        echo "redis-server not found; installing Debian's redis-server package" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    fi
    REDIS_TEMP_DIR=${REDIS_TEMP_DIR:-$(mktemp -d /tmp/cascade-redis.XXXXXX)}
    REDIS_PORT=${REDIS_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
        --dir "$REDIS_TEMP_DIR" --daemonize yes --pidfile "$REDIS_TEMP_DIR/redis.pid" \
        --logfile "$REDIS_TEMP_DIR/redis.log"
    local up=""
    for _ in $(seq 200); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && up=1 && break
        sleep 0.1
    done
    if [ -z "$up" ]; then
        echo "Redis did not start; see $REDIS_TEMP_DIR/redis.log" >&2
        return 1
    fi
    export REDIS_TEST_URL="redis://127.0.0.1:$REDIS_PORT/0"
    export REDIS_TEMP_DIR REDIS_PORT
}

redis_temp_halt() {
    # Stops the server and waits until it is gone; keeps its directory and port.
    if [ -n "${REDIS_TEMP_DIR:-}" ] && [ -f "$REDIS_TEMP_DIR/redis.pid" ]; then
        local pid
        pid=$(cat "$REDIS_TEMP_DIR/redis.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$REDIS_TEMP_DIR/redis.pid"
    fi
}

redis_temp_stop() {
    redis_temp_halt
    if [ -n "${REDIS_TEMP_DIR:-}" ]; then
        rm -rf "$REDIS_TEMP_DIR"
    fi
}
