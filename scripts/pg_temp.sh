#!/usr/bin/env bash
# Source this file: starts a throw-away PostgreSQL cluster (initdb + pg_ctl in a
# temp dir, no systemd) and exports DATABASE_URL. pg_temp_stop removes it.
# Installs Debian's PostgreSQL server first when it is missing.
#
# The benchmarks (bench/pg.py) run the same functions: a preset PG_TEMP_DIR and
# PG_PORT are kept, pg_temp_server_stop MODE / pg_temp_server_start restart the
# server on its data directory, PG_TEMP_DURABLE=1 keeps fsync and synchronous
# commits on, and PG_TEMP_EXTRA adds server options (e.g. "-c shared_buffers=512MB").

pg_temp_find_bin() {
    local initdb
    initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
    [ -n "$initdb" ] && dirname "$initdb"
}

pg_temp_install() {
    PG_BIN=$(pg_temp_find_bin || true)
    if [ -z "${PG_BIN:-}" ]; then
        echo "PostgreSQL server not found; installing Debian's postgresql package" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
        PG_BIN=$(pg_temp_find_bin)
    fi
    # initdb refuses to run as root; the postgres system user comes with the package.
    PG_TEMP_OWNER=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        PG_TEMP_OWNER=(runuser -u postgres --)
    fi
}

pg_temp_server_start() {
    # Durability is pointless for a test database; turning it off makes commits cheap.
    local options="-p $PG_PORT -k $PG_TEMP_DIR -c listen_addresses=127.0.0.1 -c max_connections=200"
    if [ "${PG_TEMP_DURABLE:-0}" != 1 ]; then
        options="$options -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    "${PG_TEMP_OWNER[@]}" "$PG_BIN/pg_ctl" -D "$PG_TEMP_DIR/data" -l "$PG_TEMP_DIR/log" -w -s start \
        -o "$options ${PG_TEMP_EXTRA:-}"
}

pg_temp_server_stop() {
    # fast: open transactions rolled back, clients cut off, a shutdown checkpoint written
    # (every acknowledged commit survives); immediate: no checkpoint (throw-away data).
    "${PG_TEMP_OWNER[@]}" "$PG_BIN/pg_ctl" -D "$PG_TEMP_DIR/data" -m "${1:-fast}" -w -s stop
}

pg_temp_start() {
    pg_temp_install
    PG_TEMP_DIR=${PG_TEMP_DIR:-$(mktemp -d /tmp/cascade-pg.XXXXXX)}
    PG_PORT=${PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$PG_TEMP_DIR"
    fi
    "${PG_TEMP_OWNER[@]}" "$PG_BIN/initdb" -D "$PG_TEMP_DIR/data" -U cascade -A trust --no-sync -E UTF8 >/dev/null
    pg_temp_server_start
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U cascade cascade
    export DATABASE_URL="postgres://cascade@127.0.0.1:$PG_PORT/cascade"
    export PG_BIN PG_PORT PG_TEMP_DIR
}

pg_temp_stop() {
    if [ -n "${PG_TEMP_DIR:-}" ] && [ -d "$PG_TEMP_DIR" ]; then
        pg_temp_install
        pg_temp_server_stop immediate || true
        rm -rf "$PG_TEMP_DIR"
    fi
}
