#!/usr/bin/env bash
# Source this file: starts a throw-away PostgreSQL cluster (initdb + pg_ctl in a
# temp dir, no systemd) and exports DATABASE_URL. pg_temp_stop removes it.
# Installs Debian's PostgreSQL server first when it is missing.

pg_temp_find_bin() {
    local initdb
    initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
    [ -n "$initdb" ] && dirname "$initdb"
}

pg_temp_start() {
    PG_BIN=$(pg_temp_find_bin || true)
    if [ -z "${PG_BIN:-}" ]; then
        echo "PostgreSQL server not found; installing Debian's postgresql package" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
        PG_BIN=$(pg_temp_find_bin)
    fi
    PG_TEMP_DIR=$(mktemp -d /tmp/cascade-pg.XXXXXX)
    PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # initdb refuses to run as root; the postgres system user comes with the package.
    local as_owner=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$PG_TEMP_DIR"
        as_owner=(runuser -u postgres --)
    fi
    "${as_owner[@]}" "$PG_BIN/initdb" -D "$PG_TEMP_DIR/data" -U cascade -A trust --no-sync -E UTF8 >/dev/null
    # Durability is pointless for a test database; turning it off makes commits cheap.
    "${as_owner[@]}" "$PG_BIN/pg_ctl" -D "$PG_TEMP_DIR/data" -l "$PG_TEMP_DIR/log" -w -s start \
        -o "-p $PG_PORT -k $PG_TEMP_DIR -c listen_addresses=127.0.0.1 -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    PG_TEMP_OWNER=("${as_owner[@]}")
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U cascade cascade
    export DATABASE_URL="postgres://cascade@127.0.0.1:$PG_PORT/cascade"
    export PG_BIN PG_PORT PG_TEMP_DIR
}

pg_temp_stop() {
    if [ -n "${PG_TEMP_DIR:-}" ] && [ -d "$PG_TEMP_DIR" ]; then
        "${PG_TEMP_OWNER[@]}" "$PG_BIN/pg_ctl" -D "$PG_TEMP_DIR/data" -m immediate -s stop || true
        rm -rf "$PG_TEMP_DIR"
    fi
}
