#!/usr/bin/env python3
"""Independent reference for RFC 9162 Merkle trees, written from the RFC text.

Generates ../vectors/rfc9162.json, which crates/tlog/tests/it/vectors.rs checks
byte-for-byte against the Rust implementation. Uses only the Python standard
library and shares no code with the Rust crate: it follows the recursive
definitions of RFC 9162 literally (MTH §2.1.1, PATH §2.1.3.1, PROOF and
SUBPROOF §2.1.4.1).

Regenerate with:  python3 crates/tlog/tests/reference/rfc9162.py
"""

import hashlib
import json
import os
from functools import lru_cache


def entry(i: int) -> bytes:
    """The i-th test entry: the ASCII text "cairn-tlog vector entry <i>"."""
    return b"cairn-tlog vector entry %d" % i


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def k_split(n: int) -> int:
    """Largest power of two smaller than n (n > 1), RFC 9162 §2.1.1."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@lru_cache(maxsize=None)
def mth(lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) where D[i] = entry(i)."""
    n = hi - lo
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00" + entry(lo))
    k = k_split(n)
    return sha256(b"\x01" + mth(lo, lo + k) + mth(lo + k, hi))


def path(m: int, lo: int, hi: int) -> list:
    """PATH(m, D[lo:hi]) with m relative to lo."""
    n = hi - lo
    if n == 1:
        return []
    k = k_split(n)
    if m < k:
        return path(m, lo, lo + k) + [mth(lo + k, hi)]
    return path(m - k, lo + k, hi) + [mth(lo, lo + k)]


def subproof(m: int, lo: int, hi: int, b: bool) -> list:
    """SUBPROOF(m, D[lo:hi], b)."""
    n = hi - lo
    if m == n:
        return [] if b else [mth(lo, hi)]
    k = k_split(n)
    if m <= k:
        return subproof(m, lo, lo + k, b) + [mth(lo + k, hi)]
    return subproof(m - k, lo + k, hi, False) + [mth(lo, lo + k)]


def proof(m: int, n: int) -> list:
    """PROOF(m, D[0:n]) for 0 < m < n."""
    return subproof(m, 0, n, True)


def hexes(hashes: list) -> list:
    return [h.hex() for h in hashes]


def main() -> None:
    small = list(range(0, 65))
    large = [1000, 4097]
    trees = []
    for n in small + large:
        tree = {"size": n, "root": mth(0, n).hex()}
        if n <= 64:
            indices = list(range(n))
            olds = list(range(1, n))
        else:
            indices = sorted({0, 1, 2, n // 3, n // 2, n - 2, n - 1, 511, 512, 513, 999 % n})
            olds = sorted({1, 2, 3, 7, 8, 63, 64, 65, 511, 512, 513, n // 2, n - 1} & set(range(1, n)))
        tree["inclusion"] = [{"index": i, "path": hexes(path(i, 0, n))} for i in indices]
        tree["consistency"] = [{"old": m, "proof": hexes(proof(m, n))} for m in olds]
        trees.append(tree)
    doc = {
        "source": "crates/tlog/tests/reference/rfc9162.py (RFC 9162 §2.1, independent reference)",
        "entry": "ASCII 'cairn-tlog vector entry <i>' for leaf i",
        "trees": trees,
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vectors", "rfc9162.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
