"""Decision ids: time-ordered, unguessable, URL-safe (ULID layout)."""

from __future__ import annotations

import os

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


def new_decision_id(now_ms: int) -> str:
    """48 bits of milliseconds + 80 random bits, as 26 base32 characters."""
    n = (now_ms & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    out = []
    for _ in range(26):
        out.append(_ALPHABET[n & 31])
        n >>= 5
    return "".join(reversed(out))
