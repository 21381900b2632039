#!/usr/bin/env bash
# A real py-oidc-auth 2606.0.0 broker as a federation peer for the interop
# tests (broker-issuer/tests/pyoidc.rs): scripts/servers/pyoidc_peer.py,
# which serves py-oidc-auth's own TokenBroker and store classes over the
# standard library's http.server, bound to 127.0.0.1 on a free port.
#
#   pyoidc.sh install   create the venv and install the pinned packages (idempotent)
#   pyoidc.sh start     start (or restart) the service; prints only `export VAR=value`
#   pyoidc.sh stop      stop the service this script started (by its PID)
#
# State (venv, SQLite store, log, pid and port files) lives in
# ${BROKER_TEST_DIR:-/tmp/broker-test}/pyoidc. `start` prints
# `export BROKER_TEST_PYOIDC_URL=http://127.0.0.1:PORT` (the peer's base URL,
# which is also its issuer). The service's log holds method, path and status
# of each request, never a body (no token, no PEM).
#
# Pins: every package of the venv, == pinned in pyoidc-requirements.txt and
# installed with --no-deps (nothing resolves at install time). py-oidc-auth
# 2606.0.0 fails at import without greenlet (SQLAlchemy 2.1 made it
# optional; BROKER.md §1.10), so greenlet is pinned there beside it.
set -euo pipefail

BASE="${BROKER_TEST_DIR:-/tmp/broker-test}"
STATE="$BASE/pyoidc"
VENV="$STATE/venv"
PIDFILE="$STATE/server.pid"
PORTFILE="$STATE/server.port"
LOG="$STATE/server.log"
HOST=127.0.0.1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVICE="$HERE/pyoidc_peer.py"
REQUIREMENTS="$HERE/pyoidc-requirements.txt"

log() { echo "pyoidc.sh: $*" >&2; }

installed() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" - "$REQUIREMENTS" >/dev/null 2>&1 <<'EOF'
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    pin = line.split("#")[0].strip()
    if pin:
        name, want = pin.split("==")
        assert version(name) == want, pin
import py_oidc_auth.broker.issuer  # fails without greenlet
EOF
}

install() {
    if installed; then
        return 0
    fi
    mkdir -p "$STATE"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" >&2
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        --requirement "$REQUIREMENTS" >&2
    "$VENV/bin/pip" check --disable-pip-version-check >&2 \
        || { log "the pinned set is inconsistent: $REQUIREMENTS"; exit 1; }
    if ! installed; then
        log "py-oidc-auth installed in $VENV but does not import; see: $VENV/bin/python -c 'import py_oidc_auth.broker.issuer'"
        exit 1
    fi
}

running_pid() {
    # Prints the recorded PID if that process is still alive and still ours.
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "pyoidc_peer.py" || return 1
    echo "$pid"
}

answers() {
    "$VENV/bin/python" - "$1" >/dev/null 2>&1 <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/health", timeout=2) as r:
    assert json.load(r)["ok"]
EOF
}

stop() {
    local pid
    if pid="$(running_pid)"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "service $pid did not stop in 10 s; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
            sleep 0.2
        fi
    fi
    rm -f "$PIDFILE" "$PORTFILE"
}

start() {
    install
    stop
    mkdir -p "$STATE"
    # setsid: the service must not die with the shell that started it.
    setsid "$VENV/bin/python" "$SERVICE" --host "$HOST" --port 0 \
        --state "$STATE" --port-file "$PORTFILE" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local url=""
    for _ in $(seq 1 300); do
        if [ -z "$url" ] && [ -s "$PORTFILE" ]; then
            url="http://$HOST:$(tr -dc 0-9 <"$PORTFILE")"
        fi
        if [ -n "$url" ] && answers "$url"; then
            echo "export BROKER_TEST_PYOIDC_URL=$url"
            return 0
        fi
        if ! running_pid >/dev/null; then
            log "service exited during start-up; last lines of $LOG:"
            tail -n 20 "$LOG" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    log "service did not answer within 30 s; see $LOG"
    exit 1
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *)
        echo "usage: $0 install|start|stop" >&2
        exit 2
        ;;
esac
