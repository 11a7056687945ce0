"""Decision ids and pseudonyms: the fast encodings give what the plain ones do."""

from __future__ import annotations

import hashlib
import hmac
import random

from decision.ids import _ALPHABET, encode, new_decision_id
from decision.privacy import Pseudonymizer


def base32_by_hand(n: int) -> str:
    out = []
    for _ in range(26):
        out.append(_ALPHABET[n & 31])
        n >>= 5
    return "".join(reversed(out))


def test_encoding_matches_the_digit_by_digit_one():
    rng = random.Random(7)
    samples = [0, 1, 31, 32, (1 << 128) - 1, 1 << 127] + [rng.getrandbits(128) for _ in range(2000)]
    for n in samples:
        assert encode(n) == base32_by_hand(n)


def test_ids_are_time_ordered_and_carry_their_millisecond():
    ids = [new_decision_id(ms) for ms in (1_795_017_600_000, 1_795_017_600_001, 1_795_017_700_000)]
    assert ids == sorted(ids) and all(len(i) == 26 for i in ids)
    n = 0
    for c in ids[0]:
        n = n * 32 + _ALPHABET.index(c)
    assert n >> 80 == 1_795_017_600_000
    assert len({new_decision_id(0) for _ in range(1000)}) == 1000


def test_pseudonym_is_the_keyed_sha256_hmac():
    p = Pseudonymizer(b"secret")
    for key in ("pid:tom", "cookie:é-ü", ""):
        assert p.person(key) == hmac.new(b"secret", key.encode(), hashlib.sha256).hexdigest()[:32]
