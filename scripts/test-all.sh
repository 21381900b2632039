#!/usr/bin/env bash
# Run every test with every server started for it: installs (if missing)
# and starts throwaway PostgreSQL (with PgBouncer in front of it),
# Redis (single node and a 3-master cluster), a MongoDB-wire-protocol server, a
# py-oidc-auth 2606.0.0 broker (the interop peer) and an OpenID Connect
# provider (nanoidp) on 127.0.0.1, installs py-oidc-auth-client 2603.0.1
# (the CLI the A28 test drives; nothing to start), runs
# `cargo test --workspace`, then stops exactly the servers it started.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

servers=(postgres pgbouncer redis mongo pyoidc idp pyoidc-client)
started=()
stop_all() {
  for s in "${started[@]}"; do
    bash "scripts/servers/$s.sh" stop || echo "warning: stopping $s failed" >&2
  done
}
trap stop_all EXIT

for s in "${servers[@]}"; do
  script="scripts/servers/$s.sh"
  if [ ! -f "$script" ]; then
    echo "test-all: no $script; that backend's tests will skip (and fail under CI=true)" >&2
    continue
  fi
  echo "test-all: installing and starting $s" >&2
  bash "$script" install
  env_lines=$(bash "$script" start)
  started+=("$s")
  eval "$env_lines"
done

cargo test --workspace "$@"
