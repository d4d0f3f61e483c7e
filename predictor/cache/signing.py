"""How a prediction is stored in Redis, and read back only if this service wrote it.

Unsigned (no `--cache_signing_key`), a value is the shortest `repr` of the float, and only
that exact form is read back. Whoever can write to Redis then decides the answers of the
rows whose keys they write. Signed, a value is `<repr>|<tag>`, where the tag is a keyed
BLAKE2b MAC under the signing key over the entry's key (which names the model version) and
the repr, 128 bits, in unpadded base64 (22 characters). A value whose tag does not match,
or that has none, is a miss: a writer without the key can neither forge an answer nor move
a genuine one to another row or model version.

Why keyed BLAKE2b and not HMAC-SHA256: both are MACs (BLAKE2's keyed mode is a PRF by
design, RFC 7693, and Python documents it as the faster replacement for HMAC), and the
tag is computed on every write and checked on every Redis hit. Measured here (a loaded
2-core VM, per call): `hmac.digest(key, msg, "sha256")` 15.9 µs, a pre-keyed HMAC copied
per call 6.5 µs, keyed BLAKE2b 3.0 µs. Why 128 bits: a forger who cannot see the key must
guess a tag, each guess costing a request that is then refused; at 2^-128 per guess no
realistic number of guesses succeeds. Truncation to 128 bits is standard practice for MACs
(RFC 2104 §5, RFC 4868), and it keeps each Redis entry small.
"""

from __future__ import annotations

import hmac
import math
from binascii import b2a_base64
from hashlib import blake2b
from typing import Final

# The longest repr of a finite float is 24 characters (`-2.2250738585072014e-308`).
MAX_FLOAT_CHARS: Final = 24
TAG_BYTES: Final = 16
_TAG_CHARS: Final = 22  # unpadded base64 of 16 bytes
_SEPARATOR: Final = b"|"


class ValueCodec:
    """Encodes predictions for Redis and decodes what Redis holds; signs when given a key."""

    def __init__(self, signing_key: bytes | None = None) -> None:
        if signing_key is not None and not signing_key:
            raise ValueError("the signing key must not be empty")
        # BLAKE2b takes keys of up to 64 bytes: any secret is first hashed to 32.
        self._key = None if signing_key is None else blake2b(signing_key, digest_size=32).digest()
        self.max_bytes = MAX_FLOAT_CHARS + (0 if signing_key is None else 1 + _TAG_CHARS)
        """The longest value this codec writes: lookups read no further than this."""

    @property
    def signed(self) -> bool:
        return self._key is not None

    def encode(self, key: str, prediction: float) -> bytes:
        text = repr(prediction).encode("ascii")
        if self._key is None:
            return text
        return text + _SEPARATOR + self._tag(key, text)

    def decode(self, key: str, item: object) -> float | None:
        """The prediction stored as `item` under `key`, or None unless this codec wrote it."""
        if not isinstance(item, bytes) or not 0 < len(item) <= self.max_bytes:
            return None
        text = item
        if self._key is not None:
            text, separator, tag = item.partition(_SEPARATOR)
            if not separator or not hmac.compare_digest(tag, self._tag(key, text)):
                return None
        return _exact_float(text)

    def _tag(self, key: str, text: bytes) -> bytes:
        assert self._key is not None
        mac = blake2b(key.encode() + b"\0" + text, key=self._key, digest_size=TAG_BYTES)
        return b2a_base64(mac.digest(), newline=False).rstrip(b"=")


def _exact_float(text: bytes) -> float | None:
    """The float written as `text`, only in the exact form `repr` gives it."""
    if not 0 < len(text) <= MAX_FLOAT_CHARS:
        return None
    try:
        decoded = text.decode("ascii")
        value = float(decoded)
    except ValueError:  # UnicodeDecodeError included
        return None
    if not math.isfinite(value) or repr(value) != decoded:
        return None
    return value
