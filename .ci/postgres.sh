#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the test suite, installing it first
# from Debian's packages when the machine has none.
#
#   eval "$(bash .ci/postgres.sh)"     # or: source .ci/postgres.sh
#   bash .ci/postgres.sh stop          # stop the server this script started
#
# On stdout it prints exactly one line,
#   export CADENCE_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:PORT/cadence_test
# (and exports it when sourced); progress goes to stderr. Running it again while the server
# is up reuses that server. CADENCE_PG_DIR (default /tmp/cadence-postgres) holds the cluster
# and CADENCE_PG_PORT (default 5432, or the next free port) chooses the port.

_cadence_pg_main() {
    local dir="${CADENCE_PG_DIR:-/tmp/cadence-postgres}"
    local data="$dir/data"
    local log="$dir/server.log"
    local database="cadence_test"

    _log() { echo "postgres.sh: $*" >&2; }

    local bindir=""
    _find_bindir() {
        local candidate
        for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
            if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then
                bindir="$candidate"
                return 0
            fi
        done
        return 1
    }

    if ! _find_bindir; then
        _log "PostgreSQL not found; installing it from Debian's packages"
        if [ "$(id -u)" -ne 0 ]; then
            _log "need root to apt-get install postgresql"
            return 1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update >&2 || return 1
        apt-get install -y --no-install-recommends postgresql >&2 || return 1
        _find_bindir || { _log "postgresql installed but no initdb found"; return 1; }
    fi

    # As root, the server must run as an unprivileged user: Debian's `postgres`.
    local as_user=()
    local owner
    owner="$(id -un)"
    if [ "$(id -u)" -eq 0 ]; then
        if ! id postgres >/dev/null 2>&1; then
            useradd --system --home-dir "$dir" --shell /bin/sh postgres || return 1
        fi
        owner="postgres"
        as_user=(runuser -u postgres --)
    fi

    if [ "${1:-}" = "stop" ]; then
        if [ -f "$data/postmaster.pid" ]; then
            "${as_user[@]}" "$bindir/pg_ctl" -D "$data" -m fast -w stop >&2
        else
            _log "no server running in $data"
        fi
        return 0
    fi

    mkdir -p "$dir"
    chown "$owner" "$dir"
    chmod 700 "$dir"

    local port=""
    if [ -f "$data/postmaster.pid" ] && "${as_user[@]}" "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        port="$(sed -n 4p "$data/postmaster.pid")"
        _log "reusing the server already running on port $port"
    else
        if [ ! -f "$data/PG_VERSION" ]; then
            _log "creating a cluster in $data"
            "${as_user[@]}" "$bindir/initdb" -D "$data" -U postgres --auth=trust \
                --encoding=UTF8 --locale=C.UTF-8 >&2 || return 1
        fi
        port="${CADENCE_PG_PORT:-5432}"
        while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
            port=$((port + 1))
        done
        rm -f "$data/postmaster.pid"
        _log "starting PostgreSQL ($bindir) on 127.0.0.1:$port"
        "${as_user[@]}" "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" \
            start >&2 || { cat "$log" >&2; return 1; }
    fi

    local psql=("${as_user[@]}" "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -X -q -v ON_ERROR_STOP=1)
    if [ "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'" postgres)" != "1" ]; then
        "${psql[@]}" -c "CREATE DATABASE $database" postgres >&2 || return 1
    fi

    CADENCE_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/$database"
    export CADENCE_TEST_POSTGRES_URL
    echo "export CADENCE_TEST_POSTGRES_URL=$CADENCE_TEST_POSTGRES_URL"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    _cadence_pg_main "$@"
    exit $?
else
    _cadence_pg_main "$@"
fi
