#!/usr/bin/env python3
"""Independent reference for the Cairn env-encryption test vector (docs/protocol.md).

Uses the `cryptography` package (X25519, AES-GCM) and hashlib/hmac for HKDF-SHA256.
Prints the hex blob; it must equal crates/protocol/src/env/vector.hex.
"""
import hashlib
import hmac
import json

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import serialization

RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def hkdf_sha256(ikm, salt, info, length):
    prk = hmac.new(salt or b"\x00" * 32, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


recipient = X25519PrivateKey.from_private_bytes(b"\x11" * 32)
eph = X25519PrivateKey.from_private_bytes(b"\x22" * 32)
recipient_pk = recipient.public_key().public_bytes(*RAW)
eph_pk = eph.public_key().public_bytes(*RAW)
nonce = b"\x33" * 12
app_id = b"\x44" * 20
plaintext = json.dumps(
    {"env": [{"key": "API_KEY", "value": "s3cret"}, {"key": "_DEBUG", "value": "1"}]},
    separators=(",", ":"),
).encode()

shared = eph.exchange(recipient.public_key())
key = hkdf_sha256(shared, None, eph_pk + recipient_pk, 32)
ct = AESGCM(key).encrypt(nonce, plaintext, app_id)
print("recipient_pk", recipient_pk.hex())
print("eph_pk", eph_pk.hex())
print("plaintext", plaintext.decode())
print("aes_key", key.hex())
print("blob", (b"CAIRNENV1" + eph_pk + nonce + ct).hex())
print("shared", shared.hex())
legacy = AESGCM(shared).encrypt(nonce, plaintext, None)
print("legacy_blob", (eph_pk + nonce + legacy).hex())
