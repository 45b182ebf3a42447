"""Signed money events and their hostile twins, for the suites that check who may say what.

`Parties` holds the keys of every party a suite speaks for (registered), a key of each that
was revoked, and keys nobody registered. `hostile_twins` turns fresh copies of an event into
the six ways of sending it without the right: forged (a registered key's id over another
key's signature), tampered (one byte changed after signing), by the wrong party or brand,
with an unknown key, with a revoked key, and unsigned; each with the dead-letter reason a
service must give.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.contract.events import (
    CloudEvent,
    SigningKeyRegistered,
    SigningKeyRevoked,
    encode,
    event_key,
    make_event,
    spec_for_type,
)
from shared.contract.events.codec import sign_event
from shared.contract.signing import (
    Party,
    RejectReason,
    key_id,
    private_key_text,
    public_key_text,
    sign_document,
)
from shared.tools.signing import PartyKeys

CASES: Final = ("forged", "tampered", "wrong_owner", "unknown_key", "revoked_key", "unsigned")
OPERATOR: Final = "tests/operator"


@dataclass(frozen=True)
class Sent:
    """One message as it goes on the wire: its topic, key and bytes, and its event id."""

    topic: str
    key: bytes | None
    value: bytes
    event_id: str
    case: str = "valid"
    reason: str = ""  # the first word of the dead letter's reason, for a hostile one


def wire(event: CloudEvent[Any], case: str = "valid", reason: str = "") -> Sent:
    return Sent(spec_for_type(event.type).topic, event_key(event), encode(event), event.id, case,
                reason)  # fmt: skip


class Parties:
    """Registered keys per (party, owner), one revoked key per (party, owner) asked for, and
    keys never registered."""

    def __init__(self) -> None:
        self.keys = PartyKeys(source=OPERATOR)
        self._revoked: dict[tuple[Party, str], Ed25519PrivateKey] = {}

    def key(self, party: Party, owner: str) -> Ed25519PrivateKey:
        return self.keys.key(party, owner)

    def revoked(self, party: Party, owner: str) -> Ed25519PrivateKey:
        return self._revoked.setdefault((party, owner), Ed25519PrivateKey.generate())

    def registry(self) -> list[CloudEvent[Any]]:
        """What an operator publishes on `operator.signing-keys`: every key registered, then
        the revoked ones revoked."""
        events = self.keys.registrations()
        for (party, owner), key in self._revoked.items():
            public = public_key_text(key.public_key())
            registered = SigningKeyRegistered(
                key_id=key_id(public), party=party, owner_id=owner, public_key=public
            )
            events.append(make_event(registered, source=OPERATOR))
        for key in self._revoked.values():
            revoked = SigningKeyRevoked(key_id=key_id(key.public_key()), reason="retired")
            events.append(make_event(revoked, source=OPERATOR))
        return events

    def private_texts(self) -> list[str]:
        return [*self.keys.private_texts(), *map(private_key_text, self._revoked.values())]


def forged(event: CloudEvent[Any], claimed: Ed25519PrivateKey) -> bytes:
    """`event` claiming `claimed`'s key id, with a signature made by another key."""
    document = sign_document(json.loads(encode(event)), Ed25519PrivateKey.generate())
    document["sigkeyid"] = key_id(claimed.public_key())
    return json.dumps(document, separators=(",", ":")).encode()


def tampered(signed: CloudEvent[Any]) -> tuple[str, bytes]:
    """`signed` with one byte of its id changed after signing: (the new id, the bytes)."""
    raw = encode(signed)
    old = f'"id":"{signed.id}"'.encode()
    assert raw.count(old) == 1, "the id must appear once to change one byte of it"
    last = signed.id[-1]
    new_id = signed.id[:-1] + ("0" if last != "0" else "1")
    return new_id, raw.replace(old, f'"id":"{new_id}"'.encode())


def hostile_twins(
    fresh: Callable[[], CloudEvent[Any]],
    parties: Parties,
    *,
    signer: tuple[Party, str],
    wrong: tuple[Party, str],
    wrong_reason: RejectReason,
) -> list[Sent]:
    """The six hostile ways of sending an event `signer` may send, one fresh event each.
    `wrong` is a registered party not entitled to it (another brand, or another kind of
    party), refused with `wrong_reason`."""
    key = parties.key(*signer)
    sent = []
    event = fresh()
    sent.append(Sent(*_where(event), forged(event, key), event.id, "forged",
                     RejectReason.BAD_SIGNATURE.value))  # fmt: skip
    signed = sign_event(fresh(), key)
    new_id, raw = tampered(signed)
    sent.append(Sent(*_where(signed), raw, new_id, "tampered", RejectReason.BAD_SIGNATURE.value))
    sent.append(wire(sign_event(fresh(), parties.key(*wrong)), "wrong_owner", wrong_reason.value))
    stranger = Ed25519PrivateKey.generate()
    sent.append(wire(sign_event(fresh(), stranger), "unknown_key", RejectReason.UNKNOWN_KEY.value))
    by_revoked = sign_event(fresh(), parties.revoked(*signer))
    sent.append(wire(by_revoked, "revoked_key", RejectReason.REVOKED_KEY.value))
    sent.append(wire(fresh(), "unsigned", RejectReason.UNSIGNED.value))
    assert [s.case for s in sent] == list(CASES)
    return sent


def _where(event: CloudEvent[Any]) -> tuple[str, bytes | None]:
    return spec_for_type(event.type).topic, event_key(event)
