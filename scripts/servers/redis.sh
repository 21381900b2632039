#!/usr/bin/env bash
# Throwaway Redis servers for the test suite, bound to 127.0.0.1 only:
# a single node on port 56379 and a 3-master Redis Cluster (no replicas) on
# ports 57001-57003 (cluster bus on 47001-47003).
#
#   scripts/servers/redis.sh install    # apt-get install redis-server if missing
#   eval "$(scripts/servers/redis.sh start)"
#   cargo test -p store-redis
#   scripts/servers/redis.sh stop
#
# State (data dirs, logs, pid files) lives in
# ${BROKER_TEST_DIR:-/tmp/broker-test}/redis/. `start` prints only
# `export VAR=value` lines: BROKER_TEST_REDIS_URL,
# BROKER_TEST_REDIS_CLUSTER_URLS (comma-separated node URLs),
# BROKER_TEST_REDIS_RESTART_CMD and BROKER_TEST_REDIS_CLUSTER_RESTART_CMD
# (used by the restart tests). `start` reuses servers that are already
# running; servers it starts afresh start from empty data dirs. `stop` stops
# exactly the processes this script started (PIDs from its pid files); it
# never kills by name.
#
# Durability: every server runs with `--appendonly yes --appendfsync always`
# (each acknowledged write is in the AOF and fsync'ed before the reply) and
# RDB snapshots off. `restart [single|cluster|all]` kills the servers with
# SIGKILL (a crash: no shutdown save) and starts them again on the same data,
# so the restart tests prove acknowledged writes survive a server crash.
set -euo pipefail

SINGLE_PORT=56379
CLUSTER_PORTS=(57001 57002 57003)
BASE_DIR="${BROKER_TEST_DIR:-/tmp/broker-test}"
STATE="$BASE_DIR/redis"
# Seconds the servers stay down during `restart`, so the restart test can
# observe the outage.
RESTART_PAUSE="${BROKER_TEST_RESTART_PAUSE:-2}"
SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"

die() {
    echo "redis.sh: $*" >&2
    exit 1
}

cmd_install() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "redis-server is missing; run as root or: apt-get install redis-server"
    mkdir -p "$BASE_DIR"
    local log="$BASE_DIR/redis-install.log"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >"$log" 2>&1; then
        cat "$log" >&2
        die "apt-get install redis-server failed"
    fi
    command -v redis-server >/dev/null 2>&1 || die "redis-server installed but not on PATH"
}

dir_of() { echo "$STATE/$1"; }

# The PID we recorded for the server on port $1, if that process is still it.
running_pid() {
    local port="$1" pidfile pid
    pidfile="$(dir_of "$port")/redis.pid"
    [[ -f "$pidfile" ]] || return 1
    pid="$(head -n1 "$pidfile" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Make sure the PID was not reused by an unrelated process.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "redis-server 127.0.0.1:$port" || return 1
    echo "$pid"
}

ping() {
    [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null || true)" == PONG ]]
}

wait_ready() {
    local port="$1" i
    for i in $(seq 1 150); do
        if ping "$port"; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 30 "$(dir_of "$port")/server.log" >&2 || true
    die "redis did not answer on 127.0.0.1:$port within 15 s"
}

# Start the server on port $1 (extra redis-server options follow) on its
# existing data dir.
launch() {
    local port="$1"
    shift
    local dir
    dir="$(dir_of "$port")"
    mkdir -p "$dir"
    if ping "$port"; then
        die "something else already answers on 127.0.0.1:$port"
    fi
    rm -f "$dir/redis.pid"
    redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes \
        --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/server.log" \
        --appendonly yes --appendfsync always --save '' \
        "$@" >>"$dir/server.log" 2>&1 \
        || { tail -n 30 "$dir/server.log" >&2 || true; die "redis-server on port $port failed to start"; }
    local i
    for i in $(seq 1 100); do
        [[ -s "$dir/redis.pid" ]] && break
        sleep 0.1
    done
    wait_ready "$port"
    running_pid "$port" >/dev/null || die "redis-server on port $port wrote no usable pid file"
}

cluster_opts() {
    local port="$1"
    echo --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-port $((port - 10000)) --cluster-node-timeout 2000
}

# Start the node on port $1 unless it runs; $2 = fresh (wipe data) or keep.
start_node() {
    local port="$1" mode="$2" opts=()
    if running_pid "$port" >/dev/null; then
        wait_ready "$port"
        return 0
    fi
    if [[ "$mode" == fresh ]]; then
        rm -rf "$(dir_of "$port")"
    fi
    if [[ "$port" != "$SINGLE_PORT" ]]; then
        read -r -a opts <<<"$(cluster_opts "$port")"
    fi
    launch "$port" "${opts[@]}"
}

cluster_ok() {
    local port
    for port in "${CLUSTER_PORTS[@]}"; do
        redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    done
}

wait_cluster_ok() {
    local i
    for i in $(seq 1 200); do
        cluster_ok && return 0
        sleep 0.1
    done
    die "the cluster on ports ${CLUSTER_PORTS[*]} did not reach cluster_state:ok within 20 s"
}

start_cluster() {
    local mode="$1" port nodes=()
    if [[ "$mode" == fresh ]]; then
        # All or nothing: a fresh node cannot join the others' old cluster.
        # Reuse a running, healthy cluster; otherwise start all three afresh.
        local healthy=1
        for port in "${CLUSTER_PORTS[@]}"; do
            running_pid "$port" >/dev/null || healthy=0
        done
        if [[ "$healthy" == 1 ]] && ! cluster_ok; then
            healthy=0
        fi
        if [[ "$healthy" == 0 ]]; then
            stop_nodes TERM "${CLUSTER_PORTS[@]}"
        fi
    fi
    for port in "${CLUSTER_PORTS[@]}"; do
        start_node "$port" "$mode"
        nodes+=("127.0.0.1:$port")
    done
    # Slots not yet assigned: a fresh cluster, create it.
    if [[ "$(redis-cli -h 127.0.0.1 -p "${CLUSTER_PORTS[0]}" cluster info | grep '^cluster_slots_assigned:' | tr -dc 0-9)" == 0 ]]; then
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
            >"$STATE/cluster-create.log" 2>&1 \
            || { cat "$STATE/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
    fi
    wait_cluster_ok
}

print_env() {
    local urls=() port
    for port in "${CLUSTER_PORTS[@]}"; do
        urls+=("redis://127.0.0.1:$port")
    done
    local joined
    joined="$(IFS=,; echo "${urls[*]}")"
    local prefix
    prefix="BROKER_TEST_DIR=$(printf %q "$BASE_DIR") BROKER_TEST_RESTART_PAUSE=$(printf %q "$RESTART_PAUSE") bash $(printf %q "$SCRIPT")"
    printf 'export BROKER_TEST_REDIS_URL=%q\n' "redis://127.0.0.1:$SINGLE_PORT"
    printf 'export BROKER_TEST_REDIS_CLUSTER_URLS=%q\n' "$joined"
    printf 'export BROKER_TEST_REDIS_RESTART_CMD=%q\n' "$prefix restart single"
    printf 'export BROKER_TEST_REDIS_CLUSTER_RESTART_CMD=%q\n' "$prefix restart cluster"
}

cmd_start() {
    cmd_install
    mkdir -p "$STATE"
    start_node "$SINGLE_PORT" fresh
    start_cluster fresh
    print_env
}

# Stop the servers on ports $2... with signal $1 (TERM or KILL): signal them
# all, then wait for each to exit.
stop_nodes() {
    local sig="$1" port pid i
    shift
    local pids=()
    for port in "$@"; do
        if pid="$(running_pid "$port")"; then
            kill -"$sig" "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    for pid in "${pids[@]}"; do
        for i in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        kill -0 "$pid" 2>/dev/null && die "redis-server $pid did not stop"
    done
    for port in "$@"; do
        rm -f "$(dir_of "$port")/redis.pid"
    done
}

cmd_stop() {
    stop_nodes TERM "$SINGLE_PORT" "${CLUSTER_PORTS[@]}"
}

cmd_restart() {
    local which="${1:-all}" port ports=()
    case "$which" in
        single) ports=("$SINGLE_PORT") ;;
        cluster) ports=("${CLUSTER_PORTS[@]}") ;;
        all) ports=("$SINGLE_PORT" "${CLUSTER_PORTS[@]}") ;;
        *) die "usage: $0 restart [single|cluster|all]" ;;
    esac
    for port in "${ports[@]}"; do
        running_pid "$port" >/dev/null || die "redis on port $port is not running (start it first)"
    done
    stop_nodes KILL "${ports[@]}"
    sleep "$RESTART_PAUSE"
    if [[ "$which" != cluster ]]; then
        start_node "$SINGLE_PORT" keep
    fi
    if [[ "$which" != single ]]; then
        start_cluster keep
    fi
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_restart "${2:-all}" ;;
    *)
        echo "usage: $0 install|start|stop|restart [single|cluster|all]" >&2
        exit 2
        ;;
esac
