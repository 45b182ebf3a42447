"""Signing benchmark: what a signature costs per event, against decoding the same event.

For one `order.redeemed` (the busiest signed type: shops send every order) and one
`deal.signed`, in this process, one core:

1. floor: decoding the event as a service does (`shared.contract.events.decode`), events/s;
2. signing it as a sender does (RFC 8785 canonical form + Ed25519), events/s;
3. checking it as a service does (`shared.runtime.trust.Trust.check`: parse, canonical form,
   Ed25519 verify, key and party checks), events/s, and that check's cost as a share of
   decode + check: the slowdown of a consumer that did nothing else.

Usage: python bench/bench_signing.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.contract.events import SigningKeyRegistered, decode, encode, make_event, spec_for_type
from shared.contract.events.codec import sign_event
from shared.contract.events.examples import valid_example
from shared.contract.signing import Party, key_id, public_key_text, sign_json
from shared.runtime.trust import KeyRegistry, Trust


def rate(work: Callable[[], Any], seconds: float) -> float:
    """Calls per second of `work`, measured over about `seconds`."""
    done, began = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        for _ in range(200):
            work()
        done += 200
    return done / elapsed


def measure(event_type: str, party: Party, owner_field: str | None, seconds: float) -> None:
    key = Ed25519PrivateKey.generate()
    event = valid_example(event_type)
    owner = getattr(event.data, owner_field) if owner_field else "shop-1"
    registry = KeyRegistry()
    public = public_key_text(key.public_key())
    registry.apply(
        make_event(
            SigningKeyRegistered(
                key_id=key_id(public), party=party, owner_id=owner, public_key=public
            ),
            source="bench",
        )
    )
    trust = Trust(registry, None, require_signatures=True)
    topic = spec_for_type(event_type).topic
    raw = encode(event)
    signed = sign_event(event, key)
    signed_raw = encode(signed)
    loop = asyncio.new_event_loop()

    def check() -> None:
        loop.run_until_complete(trust.check(signed, signed_raw))

    decoded = rate(lambda: decode(topic, signed_raw), seconds)
    signing = rate(lambda: sign_json(raw, key), seconds)
    checking = rate(check, seconds)
    share = (1 / checking) / (1 / decoded + 1 / checking)
    print(
        f"{event_type:<16} {len(signed_raw):>5} B  decode {decoded:>9,.0f}/s (floor)  "
        f"sign {signing:>8,.0f}/s ({signing / decoded:.2f}x)  "
        f"check {checking:>8,.0f}/s ({checking / decoded:.2f}x)  "
        f"check = {share:.0%} of decode + check"
    )
    loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print("\n== signing: events/s on one core, ratios to decoding the same event ==")
    measure("order.redeemed", Party.SHOP, None, args.seconds)
    measure("deal.signed", Party.BRAND, "brand_id", args.seconds)


if __name__ == "__main__":
    main()
