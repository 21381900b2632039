#!/usr/bin/env bash
# Refresh throughput (issue 18, docs/BENCHMARKS.md "Refresh throughput"):
# the broker's refresh against the in-process TestIdp on every backend at
# concurrency 1 and 32, the TestIdp's bare refresh rate as a ceiling, and
# py-oidc-auth 2606.0.0's own refresh path (OIDCAuth.broker_refresh) on
# PostgreSQL and MongoDB against the same TestIdp, in one run of a release
# build of broker-service's `refresh_bench` example.
#
#   source /tmp/broker-env.sh   # or BENCH_{POSTGRES,REDIS,REDIS_CLUSTER,MONGO}_URL
#   bash scripts/bench-refresh.sh [--refreshes N] [--stores memory,sled,…] [--no-py]
#
# Server URLs: BENCH_*_URL, else BROKER_TEST_*_URL; a backend without one is
# skipped with a line on stderr. Prints a Markdown table; the JSON goes to
# target/bench-refresh.json (BENCH_REFRESH_JSON=… to choose). py-oidc-auth
# runs in the pinned venv of scripts/py-oidc-auth-bench.sh (python3 >= 3.10,
# network access the first time).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
JSON=${BENCH_REFRESH_JSON:-$ROOT/target/bench-refresh.json}
py=(--py "$ROOT/scripts/py-oidc-auth-bench.sh")
args=()
for a in "$@"; do
  if [ "$a" = "--no-py" ]; then py=(); else args+=("$a"); fi
done
cargo build --release -p broker-service --example refresh_bench
exec "$ROOT/target/release/examples/refresh_bench" --json "$JSON" "${py[@]}" "${args[@]}"
