"""py-oidc-auth's session stores under the workload of `brokerctl bench`.

Run through scripts/py-oidc-auth-bench.sh, which creates the pinned venv
this needs. Prints one JSON document (the shape `bench-report` reads):
per operation (save, get, delete) and concurrency, ops/s and p50/p99/mean
latency of py-oidc-auth's own store calls, with a refresh token of
--payload bytes and a user_info JSON text of --user-info bytes.

PostgreSQL runs `SQLAlchemyBrokerStore` on an asyncpg engine made as the
library makes it (`create_async_engine(url, pool_pre_ping=True)`, the
default pool) in a schema of its own; MongoDB runs `MongoDBBrokerStore` on
a database of its own. Both are dropped at the end. The URL never appears
in the output (it may hold a password).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import secrets
import sys
import time
from importlib import metadata

from py_oidc_auth.broker import store as pystore

TTL = 3600


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return None


def jti(space: int, i: int) -> str:
    """Session id `i` of id space `space`: random-looking, 24 hex digits like ours."""
    return hashlib.sha256(f"{space}:{i}".encode()).hexdigest()[:24]


def token(i: int, size: int) -> str:
    out = hashlib.sha256(f"token:{i}".encode()).hexdigest()
    while len(out) < size:
        out += hashlib.sha256(out[-64:].encode()).hexdigest()
    return out[:size]


def user_info(i: int, size: int) -> str:
    """A userinfo JSON text of exactly `size` bytes (padded in a claim)."""
    sub = f"user{i % 100000:06}"
    claims = {
        "sub": sub,
        "email": "jane.doe@example.org",
        "name": "Jane Doe",
        "preferred_username": "jdoe",
        "groups": ["staff", "admins"],
        "pad": "",
    }
    text = json.dumps(claims, separators=(",", ":"))
    claims["pad"] = "x" * max(0, size - len(text))
    return json.dumps(claims, separators=(",", ":"))


def stats(lat_ns: list[int], misses: int, elapsed: float) -> dict:
    """Nearest-rank percentiles of the latencies (µs), as `brokerctl bench` reports them."""
    lat = sorted(lat_ns)
    n = len(lat)

    def pct(p: float) -> float:
        if not lat:
            return 0.0
        rank = min(max(int(-(-p * n // 1)), 1), n)
        return round(lat[rank - 1] / 1000.0, 1)

    return {
        "ops": n,
        "misses": misses,
        "ops_per_sec": round(n / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "mean_us": round(sum(lat) / n / 1000.0, 1) if n else 0.0,
    }


async def drive(concurrency: int, count: int, f) -> dict:
    """Run f(0..count) from `concurrency` tasks; f returns whether it found something."""
    nxt = 0
    lat: list[int] = []
    misses = 0

    async def worker():
        nonlocal nxt, misses
        while True:
            i = nxt
            if i >= count:
                return
            nxt += 1
            t = time.perf_counter_ns()
            hit = await f(i)
            lat.append(time.perf_counter_ns() - t)
            misses += 0 if hit else 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))
    return stats(lat, misses, time.perf_counter() - started)


class Postgres:
    def __init__(self, url: str):
        from sqlalchemy.ext.asyncio import create_async_engine

        self.url = url.replace("postgres://", "postgresql+asyncpg://", 1).replace(
            "postgresql://", "postgresql+asyncpg://", 1
        )
        self.schema = "pyoidc_" + secrets.token_hex(6)
        # As the library makes its engine, plus a schema of our own.
        self.engine = create_async_engine(
            self.url,
            pool_pre_ping=True,
            connect_args={"server_settings": {"search_path": self.schema}},
        )
        self.store = pystore.SQLAlchemyBrokerStore(db=self.engine)

    def describe(self) -> str:
        pool = self.engine.pool
        return (
            f"SQLAlchemyBrokerStore, SQLAlchemy {metadata.version('sqlalchemy')} + asyncpg "
            f"{metadata.version('asyncpg')}, pool_pre_ping=True, pool size {pool.size()} "
            f"(+{pool._max_overflow} overflow)"
        )

    async def setup(self):
        from sqlalchemy import text

        async with self.engine.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {self.schema}"))
        await self.store.setup()

    async def cleanup(self):
        from sqlalchemy import text

        async with self.engine.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE"))
        await self.engine.dispose()


class Mongo:
    def __init__(self, url: str):
        from pymongo import AsyncMongoClient

        self.client = AsyncMongoClient(url)
        self.dbname = "pyoidc_" + secrets.token_hex(6)
        self.store = pystore.MongoDBBrokerStore(db=self.client[self.dbname])

    def describe(self) -> str:
        return f"MongoDBBrokerStore, pymongo {metadata.version('pymongo')} (AsyncMongoClient)"

    async def setup(self):
        await self.store.setup()

    async def cleanup(self):
        await self.client.drop_database(self.dbname)
        await self.client.close()


async def bench(args) -> dict:
    backend = Postgres(args.url) if args.store == "postgres" else Mongo(args.url)
    started_at = int(time.time())
    load_before = loadavg()
    t0 = time.perf_counter()
    await backend.setup()
    say = (lambda m: print(f"py-oidc-auth: {m}", file=sys.stderr)) if args.progress else (lambda m: None)
    results = []
    try:
        now = int(time.time())
        say(f"preloading {args.sessions} sessions")
        preload = await drive(
            args.preload_concurrency,
            args.sessions,
            lambda i: save(backend.store, jti(1, i), i, args, now + TTL),
        )
        for c in args.concurrency:
            say(f"concurrency {c}")
            space = 1000 + c
            saved = [jti(space, i) for i in range(args.ops)]
            rng = random.Random(space)
            gets = [jti(1, rng.randrange(args.sessions)) if args.sessions else saved[i] for i in range(args.ops)]
            order = list(range(args.ops))
            rng.shuffle(order)
            exp = int(time.time()) + TTL
            s = await drive(c, args.ops, lambda i: save(backend.store, saved[i], i, args, exp))
            g = await drive(c, args.ops, lambda i: get(backend.store, gets[i]))
            d = await drive(c, args.ops, lambda i: delete(backend.store, saved[order[i]]))
            results += [
                {"op": "save", "concurrency": c, "stats": s},
                {"op": "get", "concurrency": c, "stats": g},
                {"op": "delete", "concurrency": c, "stats": d},
            ]
    finally:
        await backend.cleanup()
    return {
        "tool": "py-oidc-auth",
        "version": metadata.version("py-oidc-auth"),
        "python": platform.python_version(),
        "store": args.store,
        "driver": backend.describe(),
        "args": {
            "ops": args.ops,
            "concurrency": args.concurrency,
            "payload": args.payload,
            "user_info": args.user_info,
            "sessions": args.sessions,
            "preload_concurrency": args.preload_concurrency,
        },
        "started_at": started_at,
        "elapsed_secs": round(time.perf_counter() - t0, 1),
        "preload_ops_per_sec": preload["ops_per_sec"],
        "results": results,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }


async def save(store, j, i, args, exp) -> bool:
    await store.save_session(j, f"user{i % 100000:06}", token(i, args.payload), exp, user_info(i, args.user_info))
    return True


async def get(store, j) -> bool:
    return bool(await store.get_session(j))


async def delete(store, j) -> bool:
    await store.delete_session(j)
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", choices=["postgres", "mongodb"], required=True)
    p.add_argument("--url-env", required=True, help="environment variable holding the server URL")
    p.add_argument("--ops", type=int, default=10000)
    p.add_argument("--sessions", type=int, default=10000)
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32])
    p.add_argument("--payload", type=int, default=1024)
    p.add_argument("--user-info", type=int, default=300)
    p.add_argument("--preload-concurrency", type=int, default=32)
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    args.url = os.environ.get(args.url_env, "")
    if not args.url:
        sys.exit(f"py-oidc-auth bench: ${args.url_env} is unset or empty")
    json.dump(asyncio.run(bench(args)), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
