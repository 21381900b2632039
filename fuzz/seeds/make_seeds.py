#!/usr/bin/env python3
"""Write the seed corpus for the fuzz targets (run from fuzz/seeds/).

Independent of the Rust code: the envelopes are built from the spec
(docs/SECURITY.md) with Python's `cryptography`, so the `envelope` target
opening them also cross-checks the format. Deterministic (fixed nonces).
"""
import json
import os
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PRIMARY = bytes([0x42]) * 32
OLDER = bytes([0x17]) * 32
PLACE = ("broker", "fuzz-jti", "fuzz-sub", 4_102_444_800, 1_700_000_000)


def key_id(key):
    return HKDF(hashes.SHA256(), 4, None, b"oidc-broker-store/key-id/v1").derive(key)


def field(b):
    return struct.pack(">I", len(b)) + b


def seal(key, plaintext, nonce):
    header = b"\x01" + key_id(key)
    ns, jti, sub, exp, auth = PLACE
    ad = b"".join(
        field(f)
        for f in [
            header,
            b"oidc-broker-store/seal/v1",
            b"session",
            ns.encode(),
            jti.encode(),
            sub.encode(),
            struct.pack(">Q", exp),
            struct.pack(">Q", auth),
        ]
    )
    return header + nonce + AESGCM(key).encrypt(nonce, plaintext, ad)


def payload(token, info):
    return struct.pack(">I", len(token)) + token + json.dumps(info).encode()


def write(target, name, data):
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, name), "wb") as f:
        f.write(data)


payloads = {
    "plain": payload(b"refresh-token", {"email": "a@example.org", "groups": ["a", "b"]}),
    "empty": payload(b"", {}),
    "unicode": payload("t\u00f6k\u00e9n".encode(), {"n": 1.50, "z": "\u00fcn\u00efc\u00f8d\u00e9 \U0001f389"}),
    "null": payload(b"x", None),
}
for name, p in payloads.items():
    write("session_payload", name, p)
write("envelope", "primary", seal(PRIMARY, payloads["plain"], bytes(range(12))))
write("envelope", "older", seal(OLDER, payloads["unicode"], bytes([9]) * 12))
write("envelope", "empty_plaintext", seal(PRIMARY, b"", bytes([1]) * 12))
write("envelope", "short", b"\x01" + key_id(PRIMARY) + bytes(10))
write("envelope", "planted_plaintext", b"my refresh token")

sub = "alice".encode()
write("sled_session", "v1", b"\x01" + struct.pack(">qqH", 4_102_444_800, 1_700_000_000, len(sub)) + sub + b"\x01sealed")
sub = "\u00fcn\u00efc\u00f8d\u00e9 \U0001f389".encode()
write("sled_session", "unicode", b"\x01" + struct.pack(">qqH", 0, -1, len(sub)) + sub + b"\xff")
write("sled_revocation", "v1", b"\x01" + struct.pack(">qq", 1_700_000_000, 1_700_086_400))
write("sled_peer", "v1", b"\x01" + struct.pack(">q", 7) + b'{"keys":[{"kty":"RSA","n":"AQAB"}],"x":1.50}')
salt = bytes(range(16))
write("kdf_record", "owasp", b"\x01" + struct.pack(">III", 19456, 2, 1) + salt)
write("kdf_record", "weak", b"\x01" + struct.pack(">III", 8, 1, 1) + salt)
