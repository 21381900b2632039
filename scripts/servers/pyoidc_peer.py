"""A py-oidc-auth peer for the interop tests: py-oidc-auth's own TokenBroker
and store classes behind a small stdlib HTTP server on 127.0.0.1.

Started by scripts/servers/pyoidc.sh (which installs the pinned
py-oidc-auth in a venv). The service is one py-oidc-auth instance: one
SQLite store (py-oidc-auth's default backend, SQLAlchemyBrokerStore, wiped
at start), one signing key, issuer = its own base URL, audience
"py-oidc-auth" (py-oidc-auth's default `broker_audience`).

Routes (JSON in, JSON out; bodies ≤ 64 KiB):

  GET  /health   {"ok", "py_oidc_auth", "issuer", "audience"}
  GET  /jwks, GET /auth/v2/.well-known/jwks.json
                 this instance's JWKS (TokenBroker.jwks()), at the path
                 py-oidc-auth peers fetch, so this URL can be trusted as an issuer
  POST /mint     {"sub", "email"?, "roles"?, "preferred_username"?,
                  "expiry_seconds"?, "issuer"?, "audience"?, "signing_key_pem"?}
                 -> {"token", "jti", "kid"}: TokenBroker.mint(). Without
                 "signing_key_pem", with this instance's key; with it, with a
                 TokenBroker on py-oidc-auth's in-memory store holding that key
                 (as a store migrated from elsewhere would).
  POST /verify   {"token", "trusted_issuer", "audience"?}
                 -> 200 {"ok": true, "claims"} or 401 {"ok": false, "error", "detail"}:
                 TokenBroker.verify() on a broker that trusts `trusted_issuer`.
                 One broker per (trusted_issuer, audience), kept between
                 requests: the first request sets it up (its startup JWKS
                 fetch), later unknown kids go through its lazy refresh
                 (60 s cooldown per peer) exactly as in a py-oidc-auth server.
  POST /restart  {"trusted_issuer", "audience"?} -> {"ok", "dropped"}: forget that
                 broker; the next /verify sets a new one up on the same store
                 (a restart of the py-oidc-auth worker).

Nothing here logs a request body: no token, PEM or claim reaches the log,
and error details have anything token-shaped removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import Any, Optional

import jwt as pyjwt
from py_oidc_auth.broker.issuer import TokenBroker
from py_oidc_auth.broker.store import InMemoryBrokerStore, SQLAlchemyBrokerStore

AUDIENCE = "py-oidc-auth"
MAX_BODY = 64 * 1024
JWKS_PATHS = ("/jwks", "/auth/v2/.well-known/jwks.json")

log = logging.getLogger("pyoidc_peer")


class GivenKeyStore(InMemoryBrokerStore):
    """py-oidc-auth's in-memory store, already holding a signing key."""

    def __init__(self, pem: str) -> None:
        super().__init__()
        self._given_pem = pem

    async def load_or_create_signing_key(self) -> str:
        return self._given_pem


def redact(text: str) -> str:
    """Drop anything shaped like a JWT, a PEM or a long base64 run."""
    text = re.sub(r"-----BEGIN[^-]*-----.*?(-----END[^-]*-----|$)", "[pem]", text, flags=re.S)
    text = re.sub(r"[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}(\.[A-Za-z0-9_\-]*)?", "[token]", text)
    text = re.sub(r"[A-Za-z0-9+/=_\-]{64,}", "[data]", text)
    return text[:300]


class Peer:
    """The py-oidc-auth instance: its store, own broker and trusting brokers."""

    def __init__(self, base_url: str, state: Path) -> None:
        self.base_url = base_url
        self.loop = asyncio.new_event_loop()
        db = state / "peer.sqlite"
        for leftover in state.glob("peer.sqlite*"):
            leftover.unlink()
        self.store = SQLAlchemyBrokerStore(url=f"sqlite+aiosqlite:///{db}")
        self.own = TokenBroker(store=self.store, issuer=base_url, audience=AUDIENCE)
        self.run(self.own.setup())
        self.trusting: dict[tuple[str, str], TokenBroker] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def broker_for(self, issuer: str, audience: str) -> TokenBroker:
        key = (issuer, audience)
        broker = self.trusting.get(key)
        if broker is None:
            broker = TokenBroker(
                store=self.store,
                issuer=self.base_url,
                audience=audience,
                trusted_issuers=[issuer],
            )
            await broker.setup()
            self.trusting[key] = broker
        return broker

    async def verify(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        token = str(body["token"])
        issuer = str(body["trusted_issuer"])
        broker = await self.broker_for(issuer, str(body.get("audience") or AUDIENCE))
        try:
            # Called inside the event loop, as py-oidc-auth's adapters do, so
            # its lazy refresh also schedules its store write.
            claims = broker.verify(token)
        except Exception as exc:  # PyJWT errors, httpx errors, ...
            return 401, {"ok": False, "error": type(exc).__name__, "detail": redact(str(exc))}
        finally:
            await asyncio.sleep(0)  # let a scheduled save_peer_jwks start
        return 200, {"ok": True, "claims": claims.model_dump(exclude_none=True)}

    async def mint(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        pem: Optional[str] = body.get("signing_key_pem")
        issuer = str(body.get("issuer") or self.base_url)
        audience = str(body.get("audience") or AUDIENCE)
        if pem is None and issuer == self.base_url and audience == AUDIENCE:
            broker = self.own
        else:
            store = GivenKeyStore(str(pem)) if pem is not None else self.store
            broker = TokenBroker(store=store, issuer=issuer, audience=audience)
            try:
                await broker.setup()
            except Exception as exc:
                return 400, {"ok": False, "error": type(exc).__name__,
                             "detail": "could not load the signing key"}
        token, jti = broker.mint(
            sub=str(body["sub"]),
            email=body.get("email"),
            roles=list(body.get("roles") or []),
            preferred_username=body.get("preferred_username"),
            expiry_seconds=int(body.get("expiry_seconds") or 3600),
        )
        return 200, {"token": token, "jti": jti, "kid": pyjwt.get_unverified_header(token).get("kid")}

    def restart(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key = (str(body["trusted_issuer"]), str(body.get("audience") or AUDIENCE))
        return 200, {"ok": True, "dropped": self.trusting.pop(key, None) is not None}


def handler_for(peer: Peer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "pyoidc-peer"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            # Method, path and status only (paths carry no secrets here).
            log.info("%s %s", self.address_string(), redact(format % args))

        def reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/health":
                self.reply(200, {"ok": True, "py_oidc_auth": version("py-oidc-auth"),
                                 "issuer": peer.base_url, "audience": AUDIENCE})
            elif self.path in JWKS_PATHS:
                self.reply(200, dict(peer.own.jwks()))
            else:
                self.reply(404, {"detail": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.reply(413, {"detail": "body too large"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("a JSON object is expected")
                if self.path == "/verify":
                    status, out = peer.run(peer.verify(body))
                elif self.path == "/mint":
                    status, out = peer.run(peer.mint(body))
                elif self.path == "/restart":
                    status, out = peer.restart(body)
                else:
                    status, out = 404, {"detail": "not found"}
            except (KeyError, ValueError, TypeError) as exc:
                status, out = 400, {"detail": f"bad request: {type(exc).__name__}"}
            self.reply(status, out)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, help="write the bound port here")
    args = parser.parse_args()
    if args.host != "127.0.0.1":
        sys.exit("pyoidc_peer: binds 127.0.0.1 only")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args.state.mkdir(parents=True, exist_ok=True)
    server = HTTPServer((args.host, args.port), BaseHTTPRequestHandler)
    port = server.server_address[1]
    peer = Peer(f"http://{args.host}:{port}", args.state)
    server.RequestHandlerClass = handler_for(peer)
    if args.port_file:
        args.port_file.write_text(f"{port}\n")
    log.info("py-oidc-auth %s peer on %s", version("py-oidc-auth"), peer.base_url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
