#!/usr/bin/env bash
# py-oidc-auth's session stores under the workload of `brokerctl bench`
# (scripts/py-oidc-auth/bench.py), in a venv this script owns:
# target/py-oidc-auth-venv, made with exactly the versions pinned in
# scripts/py-oidc-auth/requirements.txt (installed with --no-deps, so nothing
# unpinned comes in) and remade when that file changes. Never system-wide.
#
#   BENCH_PY_URL=postgres://… bash scripts/py-oidc-auth-bench.sh --store postgres --url-env BENCH_PY_URL [--ops N …]
#
# The server URL comes from the environment variable --url-env names, never
# the command line. Prints one JSON document. Needs python3 >= 3.10
# (PYTHON=... to choose another) and network access the first time.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REQ="$ROOT/scripts/py-oidc-auth/requirements.txt"
VENV="$ROOT/target/py-oidc-auth-venv"
PY=${PYTHON:-python3}

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  { echo "py-oidc-auth-bench: $PY is older than 3.10 (py-oidc-auth needs 3.10+)" >&2; exit 2; }

stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "py-oidc-auth-bench: creating $VENV from $REQ" >&2
  rm -rf "$VENV"
  mkdir -p "$ROOT/target"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: -r "$REQ" >&2
  "$VENV/bin/python" -m pip check >&2
  "$VENV/bin/python" -c 'import py_oidc_auth.broker.store, asyncpg, pymongo' >&2
  echo "$want" >"$stamp"
fi
# `--refresh` first: py-oidc-auth's refresh path against an IdP instead
# (scripts/py-oidc-auth/refresh_bench.py, run by scripts/bench-refresh.sh).
if [ "${1:-}" = "--refresh" ]; then
  shift
  exec "$VENV/bin/python" "$ROOT/scripts/py-oidc-auth/refresh_bench.py" "$@"
fi
exec "$VENV/bin/python" "$ROOT/scripts/py-oidc-auth/bench.py" "$@"
