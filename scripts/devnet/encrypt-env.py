"""Encrypts environment variables for a Cairn app, the way an app developer would.

Usage: encrypt-env.py <env-pubkey.json> <app id> <root k256 pubkey from chain> <out> KEY=VALUE...

<env-pubkey.json> is the KMS answer to `GET /v1/env-pubkey/<app id>`. Its signature must
recover to the KMS root k256 key registered on chain (KmsAuth.rootKeys), and its timestamp
must be fresh; only then is the env encrypted, with the public dstack SDK (dstack's legacy
format: X25519 + AES-256-GCM), and written to <out> as raw bytes (`.encrypted-env`).
Runs in the project's virtualenv (.venv, created by scripts/setup.sh).
"""

import json
import os
import subprocess
import sys
import time

from dstack_sdk import EnvVar
from dstack_sdk.encrypt_env_vars import encrypt_env_vars_sync
from eth_keys import keys

PREFIX = b"cairn-env-pubkey:"  # crates/protocol/src/sig.rs ENV_PUBKEY_PREFIX
MAX_AGE_SECS = 600
MAX_SKEW_SECS = 300


def keccak(data: bytes) -> bytes:
    # The venv has no keccak backend for eth_hash; Foundry's cast (set by scripts/lib.sh) has one.
    out = subprocess.run([os.environ["CAST"], "keccak", "0x" + data.hex()], check=True,
                         capture_output=True, text=True).stdout.strip()
    return unhex(out)


def unhex(s: str) -> bytes:
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


def main() -> int:
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    answer_file, app_id, root_hex, out = sys.argv[1:5]
    with open(answer_file, "rb") as f:
        answer = json.loads(f.read(64 * 1024))
    public_key = unhex(answer["public_key"])
    signature = unhex(answer["signature"])
    timestamp = int(answer["timestamp"])
    app = unhex(app_id)
    if len(public_key) != 32 or len(signature) != 65 or len(app) != 20:
        raise SystemExit("env-pubkey answer: bad field lengths")
    age = int(time.time()) - timestamp
    if age > MAX_AGE_SECS or age < -MAX_SKEW_SECS:
        raise SystemExit(f"env-pubkey answer: timestamp {timestamp} is not fresh")
    v = signature[64]
    if v not in (0, 1):
        raise SystemExit("env-pubkey answer: bad recovery id")
    digest = keccak(PREFIX + app + timestamp.to_bytes(8, "big") + public_key)
    signer = keys.Signature(signature).recover_public_key_from_msg_hash(digest)
    if signer.to_compressed_bytes() != unhex(root_hex):
        raise SystemExit("env-pubkey answer: not signed by the KMS root key registered on chain")
    envs = []
    for kv in sys.argv[5:]:
        key, sep, value = kv.partition("=")
        if not sep:
            raise SystemExit(f"not KEY=VALUE: {kv}")
        envs.append(EnvVar(key=key, value=value))
    blob = unhex(encrypt_env_vars_sync(envs, public_key.hex()))
    with open(out, "wb") as f:
        f.write(blob)
    return 0


if __name__ == "__main__":
    sys.exit(main())
