"""py-oidc-auth's own refresh path against an identity provider, timed.

Run by `refresh_bench` (broker-service/examples/refresh_bench.rs, through
`bash scripts/py-oidc-auth-bench.sh --refresh …`) with the issuer of its
in-process TestIdp, in the pinned venv (scripts/py-oidc-auth/requirements.txt).
Prints one JSON document.

Each worker logs in once, as `OIDCAuth.broker_token` does for a code: the
IdP's `/authorize` (the TestIdp approves it), `OIDCAuth.token(code=…)`, then
`OIDCAuth.mint_and_store`. Then it refreshes its own chain with
`OIDCAuth.broker_refresh(jwt, …)`, the library's refresh: verify the broker
JWT, `get_session`, `delete_session`, the IdP's refresh grant (a new
httpx client per call, as the library makes it), validation of the IdP's
access token, the IdP's userinfo, mint, `save_session`. The store is the
library's `SQLAlchemyBrokerStore` (asyncpg) or `MongoDBBrokerStore`, made as
scripts/py-oidc-auth/bench.py makes them, in a schema / database of its own
that is dropped at the end. Latencies: time.perf_counter_ns per refresh,
percentiles from the sorted list (nearest rank).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import sys
import time
from importlib import metadata

import httpx
from py_oidc_auth.auth_base import OIDCAuth

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Mongo, Postgres, loadavg  # noqa: E402

REDIRECT = "http://127.0.0.1:9/callback"
TOKEN_ROUTE = "/auth/v2/token"


def verifier(n: int) -> str:
    return f"py-bench-verifier-{n:08}-0123456789abcdefghijklmnopqrstuvwxyz"


def challenge(v: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b"=").decode()


async def login(auth: OIDCAuth, http: httpx.AsyncClient, n: int) -> str:
    authorize = auth.config.oidc_overview["authorization_endpoint"]
    r = await http.get(
        authorize,
        params={
            "response_type": "code",
            "client_id": auth.config.client_id,
            "redirect_uri": REDIRECT,
            "scope": "openid profile email offline_access",
            "code_challenge": challenge(verifier(n)),
            "code_challenge_method": "S256",
        },
    )
    code = httpx.URL(r.headers["location"]).params["code"]
    idp_token = await auth.token(
        TOKEN_ROUTE, code=code, redirect_uri=REDIRECT, code_verifier=verifier(n)
    )
    return (await auth.mint_and_store(idp_token)).access_token


async def drive(auth: OIDCAuth, jwts: list[str], total: int):
    nxt = 0
    lat: list[int] = []

    async def worker(k: int):
        nonlocal nxt
        while nxt < total:
            nxt += 1
            t = time.perf_counter_ns()
            token = await auth.broker_refresh(jwts[k], TOKEN_ROUTE)
            lat.append(time.perf_counter_ns() - t)
            jwts[k] = token.access_token

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(len(jwts))))
    return lat, time.perf_counter() - started


def cell(lat: list[int], elapsed: float) -> dict:
    lat = sorted(lat)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * p))] / 1e6

    return {
        "refreshes": len(lat),
        "seconds": elapsed,
        "per_second": len(lat) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": lat[-1] / 1e6,
        "load1": loadavg(),
    }


async def bench(args) -> dict:
    backend = Postgres(args.url) if args.store == "postgres" else Mongo(args.url)
    await backend.setup()
    auth = OIDCAuth(
        client_id=args.client_id,
        client_secret=args.client_secret,
        discovery_url=args.issuer.rstrip("/") + "/.well-known/openid-configuration",
        broker_mode=True,
        broker_store_obj=backend.store,
    )
    out = {
        "py_oidc_auth": metadata.version("py-oidc-auth"),
        "store": backend.describe(),
        "python": sys.version.split()[0],
    }
    try:
        async with httpx.AsyncClient(follow_redirects=False) as http:
            for c in args.concurrency:
                jwts = [await login(auth, http, n) for n in range(c)]
                await drive(auth, jwts, args.warmup)
                lat, elapsed = await drive(auth, jwts, args.refreshes)
                out[f"c{c}"] = cell(lat, elapsed)
                print(f"py-oidc-auth refresh {args.store} c{c}: {out[f'c{c}']['per_second']:.0f}/s",
                      file=sys.stderr)
    finally:
        await backend.cleanup()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issuer", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--store", choices=["postgres", "mongodb"], required=True)
    p.add_argument("--url-env", required=True, help="environment variable holding the server URL")
    p.add_argument("--refreshes", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32])
    args = p.parse_args()
    args.url = os.environ.get(args.url_env, "")
    if not args.url:
        sys.exit(f"py-oidc-auth refresh bench: ${args.url_env} is unset or empty")
    # The client secret comes from the environment, never the command line.
    args.client_secret = os.environ.get("BENCH_PY_CLIENT_SECRET") or None
    json.dump(asyncio.run(bench(args)), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
