"""Who may say what (shared/runtime/trust.py), without a broker: each refusal and its reason,
and that a refused event never reaches a handler while its valid neighbours do."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.contract.events import (
    CloudEvent,
    SigningKeyRegistered,
    SigningKeyRevoked,
    decode,
    encode,
    event_key,
    make_event,
)
from shared.contract.events.codec import sign_event
from shared.contract.events.examples import valid_example
from shared.contract.signing import (
    Party,
    RejectReason,
    key_id,
    public_key_text,
    sign_document,
    sign_json,
    signature_valid,
)
from shared.runtime.kafka import Delivery, SafeConsumer
from shared.runtime.trust import KeyRegistry, Trust, Untrusted
from tests.unit.test_failure_policy import RETRY, RecordingDeadLetters

BRAND = Ed25519PrivateKey.generate()
OTHER_BRAND = Ed25519PrivateKey.generate()
SHOP = Ed25519PrivateKey.generate()
REVOKED = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()  # never registered


def _register(
    registry: KeyRegistry,
    key: Ed25519PrivateKey,
    party: Party,
    owner: str,
    brands: list[str] | None = None,
) -> None:
    public = public_key_text(key.public_key())
    data = SigningKeyRegistered(
        key_id=key_id(public), party=party, owner_id=owner, public_key=public, brands=brands
    )
    registry.apply(make_event(data, source="test/operator"))


@pytest.fixture
def registry() -> KeyRegistry:
    registry = KeyRegistry()
    _register(registry, BRAND, Party.BRAND, "br-12")  # the example deal's brand
    _register(registry, OTHER_BRAND, Party.BRAND, "br-99")
    _register(registry, SHOP, Party.SHOP, "shop-1")
    _register(registry, REVOKED, Party.BRAND, "br-12")
    revoked = key_id(REVOKED.public_key())
    registry.apply(make_event(SigningKeyRevoked(key_id=revoked), source="test/operator"))
    return registry


def deal(**changes: Any) -> CloudEvent[Any]:
    event = valid_example("deal.signed")
    return event.model_copy(update=changes) if changes else event


async def refusal(trust: Trust, event: CloudEvent[Any], raw: bytes | None = None) -> str:
    with pytest.raises(Untrusted) as refused:
        await trust.check(event, encode(event) if raw is None else raw)
    return refused.value.reason


async def test_a_deal_signed_by_its_brand_passes(registry: KeyRegistry) -> None:
    trust = Trust(registry, None, require_signatures=True)
    signed = sign_event(deal(), BRAND)
    signer = await trust.check(signed, encode(signed))
    assert signer is not None and (signer.party, signer.owner_id) == (Party.BRAND, "br-12")


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (STRANGER, RejectReason.UNKNOWN_KEY),
        (REVOKED, RejectReason.REVOKED_KEY),
        (SHOP, RejectReason.WRONG_PARTY),
        (OTHER_BRAND, RejectReason.NOT_THE_OWNER),
    ],
    ids=["unknown", "revoked", "a-shop-signs-a-deal", "another-brand"],
)
async def test_a_deal_signed_by_anyone_else_is_refused(
    registry: KeyRegistry, key: Ed25519PrivateKey, reason: RejectReason
) -> None:
    trust = Trust(registry, None, require_signatures=True)
    assert (await refusal(trust, sign_event(deal(), key))).startswith(f"{reason.value}: ")


async def test_our_services_may_confirm_a_deliverable_but_not_speak_for_a_brand(
    registry: KeyRegistry,
) -> None:
    """Tracking confirms the deliverables it sees itself: a `deliverable.confirmed` signed with
    the services' key passes as theirs, while a deal signed with it is another party's."""
    service = Ed25519PrivateKey.generate()
    _register(registry, service, Party.SERVICE, "creatorflow")
    trust = Trust(registry, None, require_signatures=True)
    confirmation = sign_event(valid_example("deliverable.confirmed"), service)
    signer = await trust.check(confirmation, encode(confirmation))
    assert signer is not None and signer.party is Party.SERVICE and signer.brand() is None
    by_brand = sign_event(valid_example("deliverable.confirmed"), OTHER_BRAND)
    signer = await trust.check(by_brand, encode(by_brand))
    assert signer is not None and signer.brand() == "br-99"
    assert (await refusal(trust, sign_event(deal(), service))).startswith("wrong_party: ")


async def test_one_changed_byte_breaks_the_signature(registry: KeyRegistry) -> None:
    trust = Trust(registry, None, require_signatures=True)
    raw = encode(sign_event(deal(), BRAND))
    tampered = raw.replace(b'"amount":"', b'"amount":"1', 1)
    assert tampered != raw
    reason = await refusal(trust, decode("campaign.deals", tampered), tampered)
    assert reason.startswith("bad_signature: ")


async def test_a_signature_moved_to_another_event_is_refused(registry: KeyRegistry) -> None:
    trust = Trust(registry, None, require_signatures=True)
    signed = sign_event(deal(), BRAND)
    other = deal(id="another-id", sigkeyid=signed.sigkeyid, signature=signed.signature)
    assert (await refusal(trust, other)).startswith("bad_signature: ")


async def test_unsigned_money_events_are_refused_in_production_only(
    registry: KeyRegistry,
) -> None:
    production = Trust(registry, None, require_signatures=True)
    assert (await refusal(production, deal())).startswith("unsigned: ")
    development = Trust(registry, None, require_signatures=False)
    assert await development.check(deal(), encode(deal())) is None


@pytest.mark.parametrize("require_signatures", [True, False], ids=["production", "development"])
async def test_half_a_signature_is_refused_even_where_unsigned_events_pass(
    registry: KeyRegistry, require_signatures: bool
) -> None:
    trust = Trust(registry, None, require_signatures=require_signatures)
    signed = sign_event(deal(), BRAND)
    no_key_id = signed.model_copy(update={"sigkeyid": None})
    assert (await refusal(trust, no_key_id)) == (
        "bad_signature: deal.signed carries a signature but no sigkeyid: sign it with both"
    )
    no_signature = signed.model_copy(update={"signature": None})
    assert (await refusal(trust, no_signature)).startswith(
        "bad_signature: deal.signed carries a sigkeyid but no signature"
    )


async def test_events_nobody_signs_pass_and_our_own_unsigned_ones_in_development_only(
    registry: KeyRegistry,
) -> None:
    production = Trust(registry, None, require_signatures=True)
    for event_type in ("fx.rates.published", "creator.profile.upserted"):
        event = valid_example(event_type)
        assert await production.check(event, encode(event)) is None
    # An unsigned attribution moves commission: in production it is someone else's.
    refused = await refusal(production, valid_example("attribution.updated"))
    assert refused == "unsigned: attribution.updated must be signed by its service"
    development = Trust(registry, None, require_signatures=False)
    event = valid_example("attribution.updated")
    assert await development.check(event, encode(event)) is None


async def test_a_revoked_key_registered_again_stays_revoked(registry: KeyRegistry) -> None:
    _register(registry, REVOKED, Party.BRAND, "br-12")
    trust = Trust(registry, None, require_signatures=True)
    assert (await refusal(trust, sign_event(deal(), REVOKED))).startswith("revoked_key")


async def test_a_key_registered_again_for_another_owner_stays_its_first_owners(
    registry: KeyRegistry,
) -> None:
    _register(registry, BRAND, Party.BRAND, "br-99")  # br-12's key, claimed for br-99
    _register(registry, BRAND, Party.SHOP, "shop-1")
    trust = Trust(registry, None, require_signatures=True)
    assert await trust.check(sign_event(deal(), BRAND), encode(sign_event(deal(), BRAND)))
    other = deal(data=deal().data.model_copy(update={"brand_id": "br-99"}))
    assert (await refusal(trust, sign_event(other, BRAND))).startswith("not_the_owner")


def order(brand_id: str | None) -> CloudEvent[Any]:
    event = valid_example("order.redeemed")
    return event.model_copy(update={"data": event.data.model_copy(update={"brand_id": brand_id})})


async def test_a_shop_bound_to_its_brands_sends_orders_for_them_only(
    registry: KeyRegistry,
) -> None:
    """A shop key registered with its brands: an order naming another brand is refused, one
    naming none is its brand's (the consumer fills it in), and a shop selling for several
    brands must name one."""
    one, several = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    _register(registry, one, Party.SHOP, "shop-acme", ["br-acme"])
    _register(registry, several, Party.SHOP, "mall", ["br-acme", "br-zest"])
    trust = Trust(registry, None, require_signatures=True)

    for key, named in ((one, "br-acme"), (one, None), (several, "br-zest")):
        signed = sign_event(order(named), key)
        signer = await trust.check(signed, encode(signed))
        assert signer is not None and signer.party is Party.SHOP
    signed = sign_event(order(None), one)
    signer = await trust.check(signed, encode(signed))
    assert signer is not None and signer.shop_brand() == "br-acme"

    assert await refusal(trust, sign_event(order("br-12"), one)) == (
        "not_the_owner: brand_id br-12 signed with the key of shop shop-acme, which sells for "
        "br-acme"
    )
    assert await refusal(trust, sign_event(order(None), several)) == (
        "not_the_owner: shop mall sells for several brands (br-acme, br-zest): order.redeemed "
        "must name its brand_id"
    )
    # Refunds and clicks name their brand the same way.
    for kind in ("order.refunded", "link.clicked"):
        example = valid_example(kind)
        elsewhere = example.model_copy(
            update={"data": example.data.model_copy(update={"brand_id": "br-12"})}
        )
        assert (await refusal(trust, sign_event(elsewhere, one))).startswith(
            "not_the_owner: brand_id br-12 signed with the key of shop shop-acme"
        )
        assert (await refusal(trust, sign_event(example, several))).endswith(
            f"{kind} must name its brand_id"
        )
    # A shop key bound to nothing signs for any brand, as before brands were named.
    unbound = sign_event(order("br-12"), SHOP)
    signer = await trust.check(unbound, encode(unbound))
    assert signer is not None and signer.brands is None and signer.shop_brand() is None


def test_only_a_shop_key_names_brands() -> None:
    public = public_key_text(BRAND.public_key())
    with pytest.raises(ValueError, match="only a shop key names brands"):
        SigningKeyRegistered(
            key_id=key_id(public),
            party=Party.BRAND,
            owner_id="br-12",
            public_key=public,
            brands=["br-12"],
        )
    with pytest.raises(ValueError, match="at least 1 item"):
        SigningKeyRegistered(
            key_id=key_id(public), party=Party.SHOP, owner_id="s", public_key=public, brands=[]
        )


@pytest.mark.parametrize(
    "written",
    [
        lambda document: json.dumps(document, separators=(",", ":")),
        lambda document: json.dumps(document, indent=2, ensure_ascii=False) + "\r\n  ",
        lambda document: json.dumps(document | {"sigkeyid": "ed25519:old", "signature": "x"}),
    ],
    ids=["compact", "indented", "signed before"],
)
def test_sign_json_adds_a_signature_over_the_document_as_written(written: Any) -> None:
    document = json.loads(encode(valid_example("match.suggested")))
    document["data"]["suggestions"][0]["handle"] = "@café\u2028ü"
    raw = written(document).encode()
    signed = json.loads(sign_json(raw, BRAND))
    assert signed == sign_document(document, BRAND)
    assert signature_valid(signed, BRAND.public_key())


async def test_a_document_signed_as_json_verifies_like_a_signed_event(
    registry: KeyRegistry,
) -> None:
    """An outside party signs its own JSON (key order, spacing of its choosing)."""
    document = json.loads(encode(deal()))
    raw = json.dumps(dict(reversed(list(document.items()))), indent=2).encode()
    signed_raw = sign_json(raw, BRAND)
    event = deal(**{k: json.loads(signed_raw)[k] for k in ("sigkeyid", "signature")})
    signer = await Trust(registry, None, require_signatures=True).check(event, signed_raw)
    assert signer is not None and signer.owner_id == "br-12"


async def test_refused_events_are_dead_lettered_with_their_reason_and_neighbours_pass(
    registry: KeyRegistry,
) -> None:
    dead = RecordingDeadLetters()
    trust = Trust(registry, None, require_signatures=True)
    consumer = SafeConsumer(dead, RETRY, check_sender=trust.signer_of)
    events = [
        sign_event(deal(id="good-1"), BRAND),
        deal(id="unsigned"),
        sign_event(deal(id="forged"), STRANGER),
        sign_event(deal(id="good-2"), BRAND),
        sign_event(deal(id="wrong-brand"), OTHER_BRAND),
    ]
    deliveries = [
        Delivery("campaign.deals", 0, offset, event_key(e), encode(e), ())
        for offset, e in enumerate(events)
    ]
    handled: list[str] = []

    async def handler(batch: Any) -> None:
        handled.extend(event.id for event, _ in batch)

    await consumer.handle_batch(deliveries, handler)
    assert handled == ["good-1", "good-2"]
    assert [(offset, cls, reason.split(":")[0]) for offset, cls, reason in dead.sent] == [
        (1, "Untrusted", "unsigned"),
        (2, "Untrusted", "unknown_key"),
        (4, "Untrusted", "not_the_owner"),
    ]


def test_the_readmes_signing_snippet_makes_signatures_that_verify(
    registry: KeyRegistry,
) -> None:
    """A brand copying README.md's few lines gets events the services accept."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = readme.split("In your own code", 1)[1].split("```python\n", 1)[1].split("```")[0]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # noqa: S102 - our own documentation
    document = json.loads(encode(deal()))
    raw = namespace["sign"](document, BRAND, key_id(BRAND.public_key()))
    assert signature_valid(json.loads(raw), BRAND.public_key())


def test_the_readmes_check_accepts_what_a_service_signs_and_nothing_else() -> None:
    """Outgoing events are signed when published (the outbox relay's `sign_json`)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    part = readme.split("**Checking what CreatorFlow sends you.**", 1)[1]
    snippet = part.split("```python\n", 1)[1].split("```")[0]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # noqa: S102 - our own documentation
    service = Ed25519PrivateKey.generate()
    public = public_key_text(service.public_key())
    raw = sign_json(encode(valid_example("payout.sent")), service)
    assert namespace["from_creatorflow"](raw, public)
    assert not namespace["from_creatorflow"](raw.replace(b'"sent"', b'"settled"', 1), public)
    assert not namespace["from_creatorflow"](raw, public_key_text(BRAND.public_key()))
