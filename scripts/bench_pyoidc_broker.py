"""The anchor for BROKER.md §6 A10b: py-oidc-auth's own TokenBroker.mint,
.verify and .jwks() rates on this machine, single-threaded.

Run by scripts/bench-issuer.sh in the venv of scripts/servers/pyoidc.sh
(pinned py-oidc-auth 2606.0.0):

    python bench_pyoidc_broker.py OUT.json [--rounds 5] [--seconds 2]

Each operation: 0.5 s of warm-up, then ROUNDS rounds of about SECONDS each;
a round's rate is calls / elapsed (time.perf_counter). The JSON holds every
round and their median (the figure compared), min and max. The claims are
those py-oidc-auth mints for a user with a name, an email and two roles;
verify checks the broker's own token (its own-key path: signature, `aud`,
`iss`, `exp`, then pydantic's IDToken), as every API request does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version
from typing import Any, Callable

from py_oidc_auth.broker.issuer import TokenBroker
from py_oidc_auth.broker.store import InMemoryBrokerStore


def rate(fn: Callable[[], Any], rounds: int, seconds: float) -> dict[str, Any]:
    deadline = time.perf_counter() + 0.5
    while time.perf_counter() < deadline:
        fn()
    rates = []
    for _ in range(rounds):
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        now = start
        while now < deadline:
            for _ in range(10):
                fn()
            n += 10
            now = time.perf_counter()
        rates.append(n / (now - start))
    return {
        "ops_per_sec": statistics.median(rates),
        "min_ops_per_sec": min(rates),
        "max_ops_per_sec": max(rates),
        "rounds_ops_per_sec": rates,
    }


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg": load,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    broker = TokenBroker(
        store=InMemoryBrokerStore(),
        issuer="https://broker.example/api",
        audience="py-oidc-auth",
    )
    await broker.setup()

    def mint() -> str:
        return broker.mint(
            sub="alice",
            email="alice@example.org",
            roles=["hpcuser", "admin"],
            preferred_username="alice",
        )[0]

    token = mint()
    assert broker.verify(token).preferred_username == "alice"
    start = machine()
    results = {}
    for name, fn in (("mint", mint), ("verify", lambda: broker.verify(token)),
                     ("jwks", broker.jwks)):
        results[name] = rate(fn, args.rounds, args.seconds)
        print(f"py-oidc-auth {name}: {results[name]['ops_per_sec']:.0f}/s", file=sys.stderr)
    end = machine()
    out = {
        "command": "scripts/bench-issuer.sh anchor",
        "what": "py-oidc-auth TokenBroker.mint / verify / jwks(), one thread, RS256 (RSA-2048)",
        "py_oidc_auth": version("py-oidc-auth"),
        "pyjwt": version("PyJWT"),
        "cryptography": version("cryptography"),
        "python": platform.python_version(),
        "rounds": args.rounds,
        "round_secs": args.seconds,
        "token_bytes": len(token),
        "machine": start,
        "loadavg_end": end["loadavg"],
        "results": results,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    asyncio.run(main())
