# Shared by the test servers that run from a Python venv (mongo.sh, idp.sh,
# pyoidc.sh): the recorded PID, waiting for the server to answer, and
# stopping exactly the process the script started. Source it after setting
#   NAME       the script's name, for messages
#   PIDFILE    where the server's PID is recorded
#   LOG        the server's log
#   PID_MATCH  a string the recorded process's command line must contain
#              (so a reused PID is never taken for ours)

log() { echo "$NAME: $*" >&2; }

# Prints the recorded PID if that process is still alive and still ours.
running_pid() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$PID_MATCH" || return 1
    echo "$pid"
}

# Stops the recorded server (SIGTERM, then SIGKILL after 10 s) and forgets
# its PID. Touches no other process.
stop_recorded() {
    local pid
    if pid="$(running_pid)"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "server $pid did not stop in 10 s; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
            sleep 0.2
        fi
    fi
    rm -f "$PIDFILE"
}

# True if something listens on HOST:PORT ($1:$2).
port_in_use() {
    timeout 1 bash -c ">/dev/tcp/$1/$2" 2>/dev/null
}

# Runs the command "$@" every 0.1 s until it succeeds (30 s at most); fails
# with the log's tail if the recorded server exits first.
wait_until() {
    for _ in $(seq 1 300); do
        if "$@"; then
            return 0
        fi
        if ! running_pid >/dev/null; then
            log "server exited during start-up; last lines of $LOG:"
            tail -n 20 "$LOG" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    log "server did not answer within 30 s; see $LOG"
    exit 1
}

# True if the venv $1 holds exactly the `==` pins of the requirements file
# $2 and `import $3` works.
pins_installed() {
    [ -x "$1/bin/python" ] &&
        "$1/bin/python" - "$2" "$3" >/dev/null 2>&1 <<'PY'
import importlib, sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    pin = line.split("#")[0].strip()
    if pin:
        name, want = pin.split("==")
        assert version(name) == want, pin
importlib.import_module(sys.argv[2])
PY
}

# Makes the venv $1 hold the pins of $2 (idempotent): installed with
# --no-deps, so nothing resolves at install time, then `pip check`ed;
# `import $3` must work afterwards.
install_pinned() {
    local venv="$1" requirements="$2" module="$3"
    if pins_installed "$venv" "$requirements" "$module"; then
        return 0
    fi
    mkdir -p "$(dirname "$venv")"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" >&2
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        --requirement "$requirements" >&2
    "$venv/bin/pip" check --disable-pip-version-check >&2 ||
        { log "the pinned set is inconsistent: $requirements"; exit 1; }
    if ! pins_installed "$venv" "$requirements" "$module"; then
        log "installed in $venv, but \`import $module\` fails there"
        exit 1
    fi
}
