#!/usr/bin/env python3
"""Independent reference for Cairn's KMS KDF (docs/kdf.md), hashlib/hmac only.

    okm = HKDF-SHA256(ikm = master, salt = "cairn-kms/v1",
                      info = "cairn/v1/" || label || 0x00 || (u16be(len(part)) || part)*, L = 32)

Run: python3 kms/tests/reference/kdf_reference.py
Prints the same `okm ...` lines as `cargo run -p cairn-kms --example kdf_vectors`.
If the `cryptography` package is installed, also prints the public keys it derives
from those scalars (secp256k1, P-256 compressed; X25519), as a second cross-check.
"""
import hashlib
import hmac
import struct

SALT = b"cairn-kms/v1"


def hkdf_sha256(ikm, salt, info, length=32):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def info(label, parts):
    out = b"cairn/v1/" + label.encode() + b"\x00"
    for p in parts:
        out += struct.pack(">H", len(p)) + p
    return out


def okm(master, label, parts):
    return hkdf_sha256(master, SALT, info(label, parts))


master = bytes(range(1, 33))
app = b"\x11" * 20
inst = b"\x22" * 20
rows = [
    ("root-k256", "root-k256", []),
    ("root-ca", "root-ca", []),
    ("app-k256", "app-k256", [app]),
    ("app-ca", "app-ca", [app]),
    ("disk", "disk", [app, inst]),
    ("disk(no id)", "disk", [app, b""]),
    ("env-x25519", "env-x25519", [app]),
    ("app-k256 #1", "app-k256", [app, struct.pack(">I", 1)]),
]
values = {}
for name, label, parts in rows:
    values[name] = okm(master, label, parts)
    print(f"okm {name:<11} {values[name].hex()}")

# FORMATS.md: a GetKey derived key = HKDF-SHA256(ikm = app k256 secret, salt = "RATLS", info = path)
getkey = hkdf_sha256(values["app-k256"], b"RATLS", b"/wallet/0")
print(f"getkey secret   {getkey.hex()}")

try:
    from cryptography.hazmat.primitives.asymmetric import ec, x25519
    from cryptography.hazmat.primitives import serialization as s
except ImportError:
    pass
else:
    def ec_pub(curve, scalar):
        k = ec.derive_private_key(int.from_bytes(scalar, "big"), curve)
        return k.public_key().public_bytes(s.Encoding.X962, s.PublicFormat.CompressedPoint)

    print(f"root k256 pub   {ec_pub(ec.SECP256K1(), values['root-k256']).hex()}")
    print(f"root ca pub     {ec_pub(ec.SECP256R1(), values['root-ca']).hex()}")
    print(f"app k256 pub    {ec_pub(ec.SECP256K1(), values['app-k256']).hex()}")
    print(f"app ca pub      {ec_pub(ec.SECP256R1(), values['app-ca']).hex()}")
    print(f"getkey pub      {ec_pub(ec.SECP256K1(), getkey).hex()}")
    xk = x25519.X25519PrivateKey.from_private_bytes(values["env-x25519"])
    print(f"env x25519 pub  {xk.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw).hex()}")
