#!/usr/bin/env bash
# py-oidc-auth-client 2603.0.1 (PyPI), unmodified, for the A28 test
# (oidc-broker/tests/server/pyclient.rs): its `oidc-auth` CLI logs in to
# our oidc-broker with the device flow and refreshes, as a user would.
# Not a server: `start` and `stop` exist so scripts/test-all.sh can treat
# it like the others.
#
#   pyoidc-client.sh install   create the venv, install the pinned packages (idempotent)
#   pyoidc-client.sh env       print `export BROKER_TEST_PYOIDC_CLIENT=<venv>/bin/oidc-auth`
#   pyoidc-client.sh start     install, then as `env`
#   pyoidc-client.sh stop      nothing to stop
#
# The venv lives in ${BROKER_TEST_DIR:-/tmp/broker-test}/pyoidc-client.
# Pins: every package == pinned in pyoidc-client-requirements.txt and
# installed with --no-deps (nothing resolves at install time).
set -euo pipefail

BASE="${BROKER_TEST_DIR:-/tmp/broker-test}"
STATE="$BASE/pyoidc-client"
VENV="$STATE/venv"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQUIREMENTS="$HERE/pyoidc-client-requirements.txt"

NAME=pyoidc-client.sh
# shellcheck source=lib.sh
. "$HERE/lib.sh"

install() {
    install_pinned "$VENV" "$REQUIREMENTS" py_oidc_auth_client.__main__
    if [ ! -x "$VENV/bin/oidc-auth" ]; then
        log "py-oidc-auth-client installed in $VENV but has no oidc-auth command"
        exit 1
    fi
}

env_lines() {
    echo "export BROKER_TEST_PYOIDC_CLIENT=$VENV/bin/oidc-auth"
}

case "${1:-}" in
    install) install ;;
    env) env_lines ;;
    start) install; env_lines ;;
    stop) ;;
    *)
        echo "usage: $0 install|env|start|stop" >&2
        exit 2
        ;;
esac
