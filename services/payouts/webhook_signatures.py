"""Webhook signatures: the header `t=<unix seconds>,v1=<hex>`, where `v1` is HMAC-SHA256 of
`<t>.<raw body>` under the endpoint's secret.

This is Stripe's scheme (the `Stripe-Signature` header): several `v1` may be present while a
secret rotates, and other schemes (`v0`) are ignored. The same scheme, under a header and
secrets of our own, signs the PayPal and Wise routes (README.md, "Rail webhooks"). The
signature is checked before the timestamp, as Stripe's libraries do, and compared in constant
time; a delivery signed more than `tolerance` seconds from now, either way, is refused as a
replay.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

SCHEME: Final = "v1"


class SignatureRefused(ValueError):
    """A delivery whose signature header is missing, malformed, wrong or too old."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """The header value a sender puts on `body` signed at `timestamp`."""
    return f"t={timestamp},{SCHEME}={signature(secret, body, timestamp)}"


def _parse(header: str) -> tuple[int, list[str]]:
    timestamps: list[str] = []
    signatures: list[str] = []
    for element in header.split(","):
        key, sep, value = element.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        raise SignatureRefused("signature header without one timestamp t=<unix seconds>")
    if not signatures:
        raise SignatureRefused(f"signature header without a {SCHEME} signature")
    return int(timestamps[0]), signatures


def verify(header: str | None, body: bytes, secret: str, *, now: float, tolerance: float) -> int:
    """The delivery's signing time if `header` signs `body` under `secret` within `tolerance`
    seconds of `now`; raises SignatureRefused otherwise."""
    if not header:
        raise SignatureRefused("no signature header")
    timestamp, given = _parse(header)
    expected = signature(secret, body, timestamp)
    # Every candidate is compared, so the time taken does not tell which one came close.
    matches = [hmac.compare_digest(expected.encode(), g.encode()) for g in given]
    if not any(matches):
        raise SignatureRefused("signature does not match the body")
    if abs(now - timestamp) > tolerance:
        when = (
            f"{now - timestamp:.0f} s ago" if timestamp < now else f"{timestamp - now:.0f} s ahead"
        )
        raise SignatureRefused(f"signed {when}, beyond the {tolerance:.0f} s tolerance")
    return timestamp
