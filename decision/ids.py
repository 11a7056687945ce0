"""Decision ids: time-ordered, unguessable, URL-safe (ULID layout)."""

from __future__ import annotations

import base64
import os

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
# RFC 4648 base32 letters -> Crockford's: the digit values are the same.
_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def new_decision_id(now_ms: int) -> str:
    """48 bits of milliseconds + 80 random bits, as 26 base32 characters."""
    return encode((now_ms & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big"))


def encode(n: int) -> str:
    """A 128-bit number as 26 Crockford base32 characters, most significant
    first: in 20 bytes it is preceded by 30 zero bits, 6 characters, dropped."""
    return base64.b32encode(n.to_bytes(20, "big"))[6:].translate(_CROCKFORD).decode()


def issued_ms(decision_id: str) -> int | None:
    """The millisecond a decision id was made at (its first 10 characters),
    or None when it is not in this alphabet."""
    n = 0
    for c in decision_id[:10]:
        digit = _ALPHABET.find(c)
        if digit < 0:
            return None
        n = n * 32 + digit
    return n
