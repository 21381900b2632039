#!/usr/bin/env bash
# The project's benchmark set, then docs/BENCHMARKS.md: builds brokerctl
# (release) and bench-report, then runs `bench-report run`, which records the
# machine (and whether it is idle), runs the benchmarks named (all by
# default; `side-by-side` for ours / raw / py-oidc-auth / the servers' own
# limits), writes their JSON under docs/bench/ and writes the page.
#
#   bash scripts/bench.sh [--quick] [--out DIR] [NAME...]
#   bash scripts/bench.sh --help                 # names and options
#   cargo run -p bench-report -- report          # the page alone, from docs/bench/*.json
#
# Server URLs: BENCH_POSTGRES_URL, BENCH_REDIS_URL, BENCH_REDIS_CLUSTER_URL
# (redis-cluster://h:p,h:p), BENCH_MONGO_URL, each defaulting to the test
# servers' BROKER_TEST_*_URL. BENCH_EXCLUSIVE=1 when nothing else runs.
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
    case "$arg" in
    -h | --help) # no release build just to print the help
        exec cargo run -q -p bench-report -- run --help ;;
    esac
done
cargo build --release -p brokerctl -p bench-report
exec target/release/bench-report run "$@"
