"""Keys of the parties a tool speaks for (the demo's brands, shop and onboarding party, the
tests'), made on demand, and their registration events for `operator.signing-keys`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.contract.events import CloudEvent, SigningKeyRegistered, make_event, spec_for_type
from shared.contract.events.codec import sign_event
from shared.contract.signing import Party, key_id, private_key_text, public_key_text

# The owner a party's events are signed as when the event does not name one.
DEFAULT_OWNERS: Final = {Party.ONBOARDING: "onboarding", Party.SHOP: "shop"}


class PartyKeys:
    """One Ed25519 key per (party, owner), created the first time it is needed."""

    def __init__(
        self, source: str = "creatorflow/keys", shop_brands: Sequence[str] | None = None
    ) -> None:
        self._keys: dict[tuple[Party, str], Ed25519PrivateKey] = {}
        self._source = source
        # The brands a shop key is registered to sell for (None: any brand).
        self._shop_brands = None if shop_brands is None else list(shop_brands)

    def key(self, party: Party, owner: str) -> Ed25519PrivateKey:
        return self._keys.setdefault((party, owner), Ed25519PrivateKey.generate())

    def sign(self, event: CloudEvent[Any], owner: str | None = None) -> CloudEvent[Any]:
        """`event` signed by the party its type needs; `owner` where the event names none (a
        confirmation's brand). Events nobody outside signs are returned as they are."""
        spec = spec_for_type(event.type)
        party = spec.signed_by
        if party is None or party is Party.SERVICE:
            return event
        named = getattr(event.data, spec.owner_field) if spec.owner_field else None
        who = named or owner or DEFAULT_OWNERS.get(party)
        if who is None:
            raise ValueError(f"{event.type}: say which {party.value} signs it (owner=...)")
        return sign_event(event, self.key(party, who))

    def registrations(self) -> list[CloudEvent[Any]]:
        """One `signing-key.registered` per key, to publish before any event they sign."""
        events = []
        for (party, owner), key in self._keys.items():
            public = public_key_text(key.public_key())
            data = SigningKeyRegistered(
                key_id=key_id(public),
                party=party,
                owner_id=owner,
                public_key=public,
                brands=self._shop_brands if party is Party.SHOP else None,
            )
            events.append(make_event(data, source=self._source))
        return events

    def private_texts(self) -> list[str]:
        """The private keys as `keys new` writes them: secrets no output may contain."""
        return [private_key_text(key) for key in self._keys.values()]
