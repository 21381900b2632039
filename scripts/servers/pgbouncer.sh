#!/usr/bin/env bash
# A throwaway PgBouncer in transaction-pooling mode in front of the test
# PostgreSQL (scripts/servers/postgres.sh), bound to 127.0.0.1:56432.
#
#   scripts/servers/pgbouncer.sh install   # apt-get install pgbouncer if missing
#   eval "$(scripts/servers/postgres.sh start)"
#   eval "$(scripts/servers/pgbouncer.sh start)"
#   cargo test -p store-postgres --test pgbouncer
#   scripts/servers/pgbouncer.sh stop
#
# State (config, user list, log, pid file) lives in
# ${BROKER_TEST_DIR:-/tmp/broker-test}/pgbouncer/; the PostgreSQL password
# is read from the postgres state dir beside it, so start PostgreSQL first.
# `start` prints only `export VAR=value` lines: BROKER_TEST_PGBOUNCER_URL.
# `stop` stops exactly the pgbouncer this script started (the PID in its pid
# file, checked against its command line); it never kills by name.
#
# PgBouncer refuses to run as root: when run as root, it drops to the
# `postgres` system user (-u), which owns the state dir.
set -euo pipefail

PORT=56432
PG_PORT=55432
BASE_DIR="${BROKER_TEST_DIR:-/tmp/broker-test}"
STATE="$BASE_DIR/pgbouncer"
CONF="$STATE/pgbouncer.ini"
USERS="$STATE/userlist.txt"
LOG="$STATE/pgbouncer.log"
PIDFILE="$STATE/pgbouncer.pid"
PG_PWFILE="$BASE_DIR/postgres/password"

die() {
    echo "pgbouncer.sh: $*" >&2
    exit 1
}

binary() {
    command -v pgbouncer 2>/dev/null || echo /usr/sbin/pgbouncer
}

cmd_install() {
    if [[ -x "$(binary)" ]]; then
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "pgbouncer is missing; run as root or: apt-get install pgbouncer"
    mkdir -p "$BASE_DIR"
    local log="$BASE_DIR/pgbouncer-install.log"
    # Only the binary is wanted: never let the package start its own service.
    if ! { apt-get update -qq && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq pgbouncer; } >"$log" 2>&1; then
        cat "$log" >&2
        die "apt-get install pgbouncer failed"
    fi
    [[ -x "$(binary)" ]] || die "pgbouncer installed but not found"
}

# The PID we recorded, if that process is still our pgbouncer.
running_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(head -n1 "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Make sure the PID was not reused by an unrelated process.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$CONF" || return 1
    echo "$pid"
}

url() {
    echo "postgres://postgres:$(cat "$PG_PWFILE")@127.0.0.1:$PORT/postgres"
}

# Wait until a TCP connection to our port succeeds.
wait_ready() {
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 30 "$LOG" >&2 || true
    die "pgbouncer did not listen on 127.0.0.1:$PORT within 10 s (log: $LOG)"
}

write_config() {
    [[ -f "$PG_PWFILE" ]] || die "no $PG_PWFILE: start PostgreSQL first (scripts/servers/postgres.sh start)"
    mkdir -p "$STATE"
    # SCRAM both ways: clients prove the password to pgbouncer, which logs
    # in to PostgreSQL with the same (plaintext, local) password.
    printf '"postgres" "%s"\n' "$(cat "$PG_PWFILE")" >"$USERS"
    cat >"$CONF" <<EOF
;; broker test pgbouncer (scripts/servers/pgbouncer.sh)
[databases]
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $USERS
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
;; sqlx sends extra_float_digits at start-up; PgBouncer does not track it.
ignore_startup_parameters = extra_float_digits
server_reset_query =
pidfile = $PIDFILE
logfile = $LOG
EOF
    chmod 600 "$USERS"
    touch "$LOG"
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "the postgres system user is missing"
        chown -R postgres:postgres "$STATE"
        chmod 700 "$STATE"
        runuser -u postgres -- test -x "$BASE_DIR" || chmod a+x "$BASE_DIR"
    fi
}

cmd_start() {
    cmd_install
    if ! running_pid >/dev/null; then
        rm -f "$PIDFILE"
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            die "something else already listens on 127.0.0.1:$PORT"
        fi
        write_config
        local user=()
        [[ "$(id -u)" == 0 ]] && user=(-u postgres)
        "$(binary)" -d "${user[@]}" "$CONF" >>"$STATE/start.out" 2>&1 \
            || { tail -n 30 "$STATE/start.out" "$LOG" >&2 || true; die "pgbouncer failed to start (log: $LOG)"; }
        local i
        for i in $(seq 1 50); do
            running_pid >/dev/null && break
            sleep 0.1
        done
        running_pid >/dev/null || die "pgbouncer wrote no pid file (log: $LOG)"
    fi
    wait_ready
    printf 'export BROKER_TEST_PGBOUNCER_URL=%q\n' "$(url)"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PIDFILE"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && die "pgbouncer $pid did not stop"
    rm -f "$PIDFILE"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    *)
        echo "usage: $0 install|start|stop" >&2
        exit 2
        ;;
esac
