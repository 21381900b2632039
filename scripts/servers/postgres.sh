#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for the test suite, bound to 127.0.0.1:55432.
#
#   scripts/servers/postgres.sh install   # apt-get install postgresql-15 if initdb is missing
#   eval "$(scripts/servers/postgres.sh start)"
#   cargo test -p store-postgres
#   scripts/servers/postgres.sh stop
#
# State (data dir, log, pid file, password) lives in
# ${BROKER_TEST_DIR:-/tmp/broker-test}/postgres/. `start` prints only
# `export VAR=value` lines: BROKER_TEST_POSTGRES_URL and
# BROKER_TEST_POSTGRES_RESTART_CMD (used by the restart test). `stop` stops
# exactly the postmaster this script started (pg_ctl stop -D <its data dir>,
# or the PID in its pid file); it never kills by name.
#
# PostgreSQL refuses to run as root: when run as root, initdb/pg_ctl run as
# the `postgres` system user (runuser), which owns the state dir.
#
# Durability: the server runs with fsync=off (it is throwaway and fast) but
# synchronous_commit=on, so every acknowledged commit is in the WAL handed to
# the OS. `restart` stops the server with `-m immediate` (a crash, no
# shutdown checkpoint), so the next start replays the WAL: the restart test
# proves acknowledged writes survive a server crash (not an OS crash).
set -euo pipefail

PORT=55432
BASE_DIR="${BROKER_TEST_DIR:-/tmp/broker-test}"
STATE="$BASE_DIR/postgres"
DATA="$STATE/data"
LOG="$STATE/server.log"
PIDFILE="$STATE/postgres.pid"
PWFILE="$STATE/password"
# Seconds the server stays down during `restart`, so the restart test can
# observe the outage.
RESTART_PAUSE="${BROKER_TEST_RESTART_PAUSE:-2}"
SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"

die() {
    echo "postgres.sh: $*" >&2
    exit 1
}

bindir() {
    local dir=""
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null || true)"
    fi
    if [[ -z "$dir" || ! -x "$dir/initdb" ]]; then
        dir=/usr/lib/postgresql/15/bin
    fi
    echo "$dir"
}

# Run a command as the server's owner: `postgres` when we are root.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

cmd_install() {
    if [[ -x "$(bindir)/initdb" && -x "$(bindir)/pg_ctl" ]]; then
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL 15 is missing; run as root or: apt-get install postgresql-15"
    mkdir -p "$BASE_DIR"
    local log="$BASE_DIR/postgres-install.log"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15; } >"$log" 2>&1; then
        cat "$log" >&2
        die "apt-get install postgresql-15 failed"
    fi
    [[ -x "$(bindir)/initdb" ]] || die "postgresql-15 installed but initdb not found in $(bindir)"
}

# The postmaster PID we recorded, if that process is still our postmaster.
running_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(head -n1 "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Make sure the PID was not reused by an unrelated process.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$DATA" || return 1
    echo "$pid"
}

url() {
    echo "postgres://postgres:$(cat "$PWFILE")@127.0.0.1:$PORT/postgres"
}

wait_ready() {
    local i
    for i in $(seq 1 100); do
        if "$(bindir)/pg_isready" -q -h 127.0.0.1 -p "$PORT" -d postgres; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 30 "$LOG" >&2 || true
    die "server did not answer on 127.0.0.1:$PORT within 10 s (log: $LOG)"
}

init_cluster() {
    mkdir -p "$STATE"
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "the postgres system user is missing (install postgresql-15)"
        chown postgres:postgres "$STATE"
        chmod 700 "$STATE"
        # The state dir's parent may have been made under a strict umask:
        # let the server's user traverse it (search only, no listing).
        runuser -u postgres -- test -x "$BASE_DIR" || chmod a+x "$BASE_DIR"
        runuser -u postgres -- test -w "$STATE" \
            || die "user postgres cannot write $STATE (is a parent of BROKER_TEST_DIR private?)"
    fi
    if [[ -f "$DATA/PG_VERSION" ]]; then
        return 0
    fi
    rm -rf "$DATA"
    # A random password per cluster; kept beside the data so restarts reuse it.
    head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$PWFILE"
    chmod 644 "$PWFILE"
    as_owner "$(bindir)/initdb" -D "$DATA" -U postgres --auth=scram-sha-256 \
        --pwfile="$PWFILE" --encoding=UTF8 --locale=C.UTF-8 >"$STATE/initdb.log" 2>&1 \
        || { cat "$STATE/initdb.log" >&2; die "initdb failed"; }
    as_owner tee -a "$DATA/postgresql.conf" >/dev/null <<EOF
# --- broker test server (scripts/servers/postgres.sh) ---
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = ''
max_connections = 300
fsync = off
synchronous_commit = on
full_page_writes = off
logging_collector = off
EOF
}

cmd_start() {
    cmd_install
    if running_pid >/dev/null; then
        wait_ready
    else
        rm -f "$PIDFILE"
        if "$(bindir)/pg_isready" -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; then
            die "something else already answers on 127.0.0.1:$PORT"
        fi
        init_cluster
        # After a crash, a dying postmaster or its orphaned backends can hold
        # postmaster.pid or shared memory for a moment: retry a few times.
        local try
        for try in 1 2 3 4 5 6; do
            if as_owner "$(bindir)/pg_ctl" -D "$DATA" -l "$LOG" -w -t 30 start >/dev/null 2>&1; then
                break
            fi
            if [[ "$try" == 6 ]]; then
                tail -n 30 "$LOG" >&2 || true
                die "pg_ctl start failed (log: $LOG)"
            fi
            sleep 1
        done
        head -n1 "$DATA/postmaster.pid" >"$PIDFILE"
        wait_ready
    fi
    local restart_cmd
    restart_cmd="BROKER_TEST_DIR=$(printf %q "$BASE_DIR") bash $(printf %q "$SCRIPT") restart"
    printf 'export BROKER_TEST_POSTGRES_URL=%q\n' "$(url)"
    printf 'export BROKER_TEST_POSTGRES_RESTART_CMD=%q\n' "$restart_cmd"
}

# Stop our postmaster; $1 = pg_ctl shutdown mode (fast | immediate).
stop_server() {
    local mode="$1" pid
    if ! pid="$(running_pid)"; then
        rm -f "$PIDFILE"
        return 0
    fi
    if ! as_owner "$(bindir)/pg_ctl" -D "$DATA" -m "$mode" -w -t 30 stop >/dev/null 2>&1; then
        # pg_ctl could not do it: signal exactly the recorded postmaster.
        kill -TERM "$pid" 2>/dev/null || true
    fi
    local i
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && die "postmaster $pid did not stop"
    rm -f "$PIDFILE"
}

cmd_stop() {
    stop_server fast
}

cmd_restart() {
    running_pid >/dev/null || die "not running (start it first)"
    stop_server immediate
    sleep "$RESTART_PAUSE"
    cmd_start >/dev/null
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_restart ;;
    *)
        echo "usage: $0 install|start|stop|restart" >&2
        exit 2
        ;;
esac
