#!/usr/bin/env bash
# Throwaway OpenID Connect provider for the broker's end-to-end tests:
# nanoidp (PyPI, pinned) from a venv, bound to 127.0.0.1:58080, with
# refresh-token rotation (and so reuse detection) on, its configuration and
# keys under ${BROKER_TEST_DIR:-/tmp/broker-test}/idp.
#
#   idp.sh install   create the venv and install nanoidp (idempotent)
#   idp.sh start     configure, start (or restart) the server, wait for its
#                    discovery document; prints only `export VAR=value` lines
#   idp.sh stop      stop the server this script started (by PID)
#
# What it configures (nanoidp's `init` writes the rest):
#   issuer      http://127.0.0.1:PORT (= the listen URL; nanoidp's default
#               issuer is http://localhost:8000, which would not match)
#   keys        jwt.keys_dir = $STATE/config/keys (never the caller's cwd)
#   rotation    oauth.refresh_token_rotation: true (a replayed refresh token
#               is refused and revokes its family)
#   client      demo-client / demo-secret, written by `init`; nanoidp accepts
#               its secret by HTTP Basic only (client_secret_basic)
#   user        broker-test / broker-test-pw with realm roles broker-user and
#               broker-admin, group broker-testers (plus init's admin/admin)
# Never bind it outside loopback: the dev profile allows the password grant.
set -euo pipefail

BASE="${BROKER_TEST_DIR:-/tmp/broker-test}"
STATE="$BASE/idp"
VENV="$STATE/venv"
CONF="$STATE/config"
PIDFILE="$STATE/server.pid"
LOG="$STATE/server.log"
HOST=127.0.0.1
PORT="${BROKER_TEST_IDP_PORT:-58080}"
URL="http://$HOST:$PORT"
NANOIDP_VERSION=3.4.0
CLIENT_ID=demo-client
CLIENT_SECRET=demo-secret
USERNAME=broker-test
PASSWORD=broker-test-pw
AUDIENCE=broker-test

NAME=idp.sh
PID_MATCH=nanoidp
# shellcheck source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

installed() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("nanoidp") != sys.argv[1])' \
            "$NANOIDP_VERSION" 2>/dev/null
}

install() {
    if installed; then
        return 0
    fi
    mkdir -p "$STATE"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" >&2
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "nanoidp==$NANOIDP_VERSION" >&2
    if ! installed; then
        log "nanoidp $NANOIDP_VERSION did not install into $VENV"
        exit 1
    fi
}

configure() {
    if [ ! -f "$CONF/settings.yaml" ]; then
        "$VENV/bin/python" -m nanoidp init "$CONF" >/dev/null
    fi
    # Rewrite the settings and the test user on every start, so a changed
    # port or a hand-edited file cannot leave a stale issuer behind.
    "$VENV/bin/python" - "$CONF" "$HOST" "$PORT" "$URL" "$AUDIENCE" "$USERNAME" "$PASSWORD" <<'EOF'
import sys, yaml
conf, host, port, url, audience, username, password = sys.argv[1:]
with open(f"{conf}/settings.yaml") as f:
    settings = yaml.safe_load(f)
settings["server"] = {"host": host, "port": int(port)}
oauth = settings.setdefault("oauth", {})
oauth["issuer"] = url
oauth["audience"] = audience
oauth["refresh_token_rotation"] = True
# nanoidp resolves its default keys_dir ("./keys") against its working
# directory: pin it under the state dir so no keys land in the repository.
settings.setdefault("jwt", {})["keys_dir"] = f"{conf}/keys"
with open(f"{conf}/settings.yaml", "w") as f:
    yaml.safe_dump(settings, f, sort_keys=False)
with open(f"{conf}/users.yaml") as f:
    users = yaml.safe_load(f)
users.setdefault("users", {})[username] = {
    "password": password,
    "email": f"{username}@example.test",
    "roles": ["broker-user", "broker-admin"],
    "groups": ["broker-testers"],
    "tenant": "default",
}
with open(f"{conf}/users.yaml", "w") as f:
    yaml.safe_dump(users, f, sort_keys=False)
EOF
    local findings
    if ! findings="$("$VENV/bin/python" -m nanoidp validate-config --config "$CONF" --strict 2>&1)"; then
        log "nanoidp refuses the configuration in $CONF:"
        echo "$findings" >&2
        exit 1
    fi
}

answers() {
    # The discovery document answers and names this issuer.
    "$VENV/bin/python" - "$URL" >/dev/null 2>&1 <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/.well-known/openid-configuration", timeout=1) as r:
    sys.exit(0 if json.load(r)["issuer"] == sys.argv[1] else 1)
EOF
}

launch() {
    if port_in_use "$HOST" "$PORT"; then
        log "port $PORT is already in use by a process this script did not start"
        exit 1
    fi
    # setsid: the server must not die with the shell that started it. Run it
    # from the state dir, so any relative path it writes stays there.
    (cd "$STATE" && exec setsid "$VENV/bin/python" -m nanoidp --config "$CONF" --host "$HOST" --port "$PORT" \
        >>"$LOG" 2>&1 </dev/null) &
    echo $! >"$PIDFILE"
    wait_until answers
}

stop() { stop_recorded; }

start() {
    install
    stop
    configure
    launch
    echo "export BROKER_TEST_IDP_URL=$URL"
    echo "export BROKER_TEST_IDP_CLIENT_ID=$CLIENT_ID"
    echo "export BROKER_TEST_IDP_CLIENT_SECRET=$CLIENT_SECRET"
    echo "export BROKER_TEST_IDP_USERNAME=$USERNAME"
    echo "export BROKER_TEST_IDP_PASSWORD=$PASSWORD"
    echo "export BROKER_TEST_IDP_AUDIENCE=$AUDIENCE"
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
