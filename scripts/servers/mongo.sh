#!/usr/bin/env bash
# Throwaway MongoDB-wire-protocol server for the store-mongo tests.
#
# There is no MongoDB package on Debian and no Docker engine here, so this runs
# SecantusDB (PyPI: a MongoDB-compatible server on WiredTiger) from a venv, in
# standalone mode (its replica-set mode is ~30x slower on writes), bound to
# 127.0.0.1:57017, with its data under ${BROKER_TEST_DIR:-/tmp/broker-test}/mongo.
#
#   mongo.sh install   create the venv and install SecantusDB (idempotent)
#   mongo.sh start     start (or restart) the server with no data; prints `export VAR=value` lines
#   mongo.sh stop      stop the server this script started (by PID)
#   mongo.sh restart   stop and start again on the same port, keeping the data
set -euo pipefail

BASE="${BROKER_TEST_DIR:-/tmp/broker-test}"
VENV="$BASE/venv"
STATE="$BASE/mongo"
DATA="$STATE/data"
PIDFILE="$STATE/server.pid"
LOG="$STATE/server.log"
HOST=127.0.0.1
PORT=57017
SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
SECANTUS_VERSION="${SECANTUS_VERSION:-SecantusDB}"

NAME=mongo.sh
PID_MATCH=secantusd-py
# shellcheck source=lib.sh
. "$(dirname "$SELF")/lib.sh"

install() {
    if [ -x "$VENV/bin/secantusd-py" ]; then
        return 0
    fi
    mkdir -p "$BASE"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" >&2
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SECANTUS_VERSION" >&2
    if [ ! -x "$VENV/bin/secantusd-py" ]; then
        log "SecantusDB installed but secantusd-py is missing from $VENV/bin"
        exit 1
    fi
}

answers() {
    # A `ping` through pymongo (shipped with SecantusDB) proves the server answers.
    "$VENV/bin/python" - "$HOST" "$PORT" >/dev/null 2>&1 <<'EOF'
import sys
from pymongo import MongoClient
c = MongoClient(sys.argv[1], int(sys.argv[2]), serverSelectionTimeoutMS=1000,
                connectTimeoutMS=1000, directConnection=True)
c.admin.command("ping")
EOF
}

launch() {
    mkdir -p "$DATA"
    if port_in_use "$HOST" "$PORT"; then
        log "port $PORT is already in use by a process this script did not start"
        exit 1
    fi
    # setsid: the server must not die with the shell that started it (the
    # restart test runs this from a short-lived `sh -c`).
    setsid "$VENV/bin/secantusd-py" --host "$HOST" --port "$PORT" \
        --storage-path "$DATA" --standalone --log-level WARNING \
        >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    wait_until answers
}

stop() { stop_recorded; }

start() {
    install
    stop
    # A throwaway server starts empty, as postgres.sh's does: data left by
    # earlier runs (a benchmark that failed before dropping its namespace)
    # slows SecantusDB down for every later test. `restart` keeps the data.
    rm -rf "$DATA"
    launch
    local restart_cmd
    restart_cmd="BROKER_TEST_DIR=$(printf '%q' "$BASE") $(printf '%q' "$SELF") restart"
    echo "export BROKER_TEST_MONGO_URL=mongodb://$HOST:$PORT/broker_test"
    echo "export BROKER_TEST_MONGO_RESTART_CMD=$(printf '%q' "$restart_cmd")"
}

restart() {
    stop
    launch
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    restart) restart ;;
    *)
        echo "usage: $0 install|start|stop|restart" >&2
        exit 2
        ;;
esac
