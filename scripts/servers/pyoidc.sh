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

NAME=pyoidc.sh
PID_MATCH=pyoidc_peer.py
# shellcheck source=lib.sh
. "$HERE/lib.sh"

install() {
    # py-oidc-auth's issuer module fails to import without greenlet.
    install_pinned "$VENV" "$REQUIREMENTS" py_oidc_auth.broker.issuer
}

answers() {
    "$VENV/bin/python" - "$1" >/dev/null 2>&1 <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/health", timeout=2) as r:
    assert json.load(r)["ok"]
EOF
}

# The service has written its port and answers there (sets URL).
peer_answers() {
    [ -s "$PORTFILE" ] || return 1
    URL="http://$HOST:$(tr -dc 0-9 <"$PORTFILE")"
    answers "$URL"
}

stop() {
    stop_recorded
    rm -f "$PORTFILE"
}

start() {
    install
    stop
    mkdir -p "$STATE"
    # setsid: the service must not die with the shell that started it.
    setsid "$VENV/bin/python" "$SERVICE" --host "$HOST" --port 0 \
        --state "$STATE" --port-file "$PORTFILE" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    wait_until peer_answers
    echo "export BROKER_TEST_PYOIDC_URL=$URL"
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
