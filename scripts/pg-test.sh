#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback, for the tests of the PostgreSQL results store.
#
#   scripts/pg-test.sh run CMD ARGS...   start a cluster in a temporary directory, run CMD with
#                                        RECGPT_TEST_POSTGRES set to its admin URL, then stop the
#                                        cluster and remove the directory (also when CMD fails)
#
# The cluster listens on 127.0.0.1 on a free port, trusts local logins, and runs without fsync:
# it holds nothing worth keeping. PostgreSQL comes from the distribution's packages
# (`scripts/setup.sh postgres` installs them); initdb refuses root, so as root the cluster runs as
# the packages' `postgres` user.
set -euo pipefail

log() { printf 'pg-test: %s\n' "$*" >&2; }

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || { log "PostgreSQL is not installed: scripts/setup.sh postgres"; exit 1; }

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

dir=""
stop() {
    [ -n "$dir" ] || return 0
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}

run() {
    local port
    trap stop EXIT
    dir=$(mktemp -d "${TMPDIR:-/tmp}/recgpt-pg.XXXXXX")
    chmod 755 "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-h 127.0.0.1 -p $port -k $dir -F -c max_connections=300" start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    export RECGPT_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($dir)"
    "$@"
}

case "${1:-}" in
    run) shift; run "$@" ;;
    *) echo "usage: $0 run CMD ARGS..." >&2; exit 2 ;;
esac
