"""The v1 event contract: registry, round trips, and what the codec refuses (and why)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr, ValidationError

from shared.contract.events import (
    EVENT_SPECS,
    TOPICS,
    CloudEvent,
    DealSigned,
    EventDecodeError,
    EventType,
    PayoutAccountUpserted,
    PayoutStatusChanged,
    Topic,
    UnknownEventType,
    decode,
    dlq_topic,
    encode,
    envelope_for,
    event_key,
    make_event,
    spec_for_type,
    specs_for_topic,
    tier_for_followers,
    type_for_data,
)
from tests.unit.event_examples import EXAMPLE_TIME, deal, payout, payout_account, valid_example

ALL_TYPES = [spec.type for spec in EVENT_SPECS]
EXTERNAL_TYPES = [spec.type for spec in EVENT_SPECS if spec.external]
INTERNAL_TYPES = [spec.type for spec in EVENT_SPECS if not spec.external]

CONTRACT_TABLE = {
    ("creator.profiles", "creator.profile.upserted", "creator_id"),
    ("creator.payout-accounts", "creator.payout-account.upserted", "creator_id"),
    ("brand.match-requests", "match.requested", "campaign_id"),
    ("match.suggestions", "match.suggested", "campaign_id"),
    ("match.feedback", "match.feedback", "campaign_id"),
    ("campaign.deals", "deal.signed", "deal_id"),
    ("campaign.deals", "deal.amended", "deal_id"),
    ("campaign.deals", "deal.cancelled", "deal_id"),
    ("campaign.deals", "campaign.attribution-model.set", "campaign_id"),
    ("brand.funding", "brand.funded", "brand_id"),
    ("tracking.post-metrics", "post.metrics.observed", "post_id"),
    ("tracking.orders", "order.redeemed", "promo_code"),
    ("tracking.orders", "order.refunded", "promo_code"),
    ("tracking.clicks", "link.clicked", "deal_id"),
    ("tracking.attribution", "attribution.updated", "deal_id"),
    ("tracking.attribution", "promo-code.leak-suspected", "deal_id"),
    ("tracking.campaign-attribution", "campaign.attribution.updated", "campaign_id"),
    ("deliverables.confirmed", "deliverable.confirmed", "deal_id"),
    ("fx.rates", "fx.rates.published", "base"),
    ("payouts.status", "payout.scheduled", "deal_id"),
    ("payouts.status", "payout.held", "deal_id"),
    ("payouts.status", "payout.sent", "deal_id"),
    ("payouts.status", "payout.failed", "deal_id"),
    ("payouts.status", "payout.settled", "deal_id"),
    ("operator.signing-keys", "signing-key.registered", "key_id"),
    ("operator.signing-keys", "signing-key.revoked", "key_id"),
}
TABLE_TOPIC_ORDER = (
    "creator.profiles",
    "creator.payout-accounts",
    "brand.match-requests",
    "match.suggestions",
    "match.feedback",
    "campaign.deals",
    "brand.funding",
    "tracking.post-metrics",
    "tracking.orders",
    "tracking.clicks",
    "tracking.attribution",
    "tracking.campaign-attribution",
    "deliverables.confirmed",
    "fx.rates",
    "payouts.status",
    "operator.signing-keys",
)
INTERNAL_TABLE_TYPES = {
    "match.suggested",
    "attribution.updated",
    "promo-code.leak-suspected",
    "campaign.attribution.updated",
    "payout.scheduled",
    "payout.held",
    "payout.sent",
    "payout.failed",
    "payout.settled",
}


def topic_of(event_type: str) -> str:
    return spec_for_type(event_type).topic


def wire(event_type: str) -> dict[str, Any]:
    """The JSON document of the valid example, ready to be broken."""
    document: dict[str, Any] = json.loads(encode(valid_example(event_type)))
    return document


def to_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def refusal(topic: str, raw: bytes, **kwargs: Any) -> EventDecodeError:
    with pytest.raises(EventDecodeError) as caught:
        decode(topic, raw, **kwargs)
    return caught.value


# --- registry -------------------------------------------------------------------------------


def test_registry_is_exactly_the_contract_table() -> None:
    rows = {(spec.topic, spec.type, spec.key_field) for spec in EVENT_SPECS}
    assert rows == CONTRACT_TABLE
    assert len(EVENT_SPECS) == len(CONTRACT_TABLE)


def test_topics_follow_the_table_order_without_dlqs() -> None:
    assert TOPICS == TABLE_TOPIC_ORDER
    assert {member.value for member in Topic} == set(TABLE_TOPIC_ORDER)
    assert not any(topic.endswith(".dlq") for topic in TOPICS)
    assert Topic.CREATOR_PROFILES == "creator.profiles"


def test_only_our_own_events_are_internal() -> None:
    assert set(INTERNAL_TYPES) == INTERNAL_TABLE_TYPES


def test_specs_for_topic() -> None:
    assert [s.type for s in specs_for_topic(Topic.TRACKING_ORDERS)] == [
        "order.redeemed",
        "order.refunded",
    ]
    assert len(specs_for_topic(Topic.PAYOUTS_STATUS)) == 5
    assert specs_for_topic("no.such.topic") == []
    for topic in TOPICS:
        assert specs_for_topic(topic)


def test_spec_for_unknown_type_raises() -> None:
    with pytest.raises(UnknownEventType):
        spec_for_type("deal.renegotiated")
    assert spec_for_type(EventType.DEAL_SIGNED).data_model is DealSigned


def test_dlq_topic() -> None:
    assert dlq_topic(Topic.CAMPAIGN_DEALS) == "campaign.deals.dlq"


def test_tiers_by_followers() -> None:
    assert [tier_for_followers(n) for n in (0, 9_999, 10_000, 99_999, 100_000)] == [
        "nano",
        "nano",
        "micro",
        "micro",
        "macro",
    ]
    assert [tier_for_followers(n) for n in (999_999, 1_000_000)] == ["macro", "mega"]


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_valid_example_round_trips(event_type: str) -> None:
    event = valid_example(event_type)
    raw = encode(event)
    decoded = decode(topic_of(event_type), raw)
    assert decoded == event
    assert type(decoded.data) is spec_for_type(event_type).data_model
    assert encode(decoded) == raw


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_example_subject_and_key_are_the_key_field(event_type: str) -> None:
    event = valid_example(event_type)
    key_value = getattr(event.data, spec_for_type(event_type).key_field)
    assert event.subject == key_value
    assert event_key(event) == str(key_value).encode()


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_json_schema_documents_every_field(event_type: str) -> None:
    schema = envelope_for(spec_for_type(event_type).data_model).model_json_schema()
    models = [schema, *schema.get("$defs", {}).values()]
    for model in models:
        for name, prop in model.get("properties", {}).items():
            assert prop.get("description"), f"{model.get('title')}.{name} has no description"


def test_encoding_is_compact_with_decimal_strings_and_utc() -> None:
    raw = encode(valid_example(EventType.DEAL_SIGNED))
    assert b": " not in raw and b", " not in raw
    document = json.loads(raw)
    assert document["time"] == "2025-04-01T12:00:00Z"
    assert document["data"]["fee"] == {"amount": "450.00", "currency": "USD"}
    assert document["data"]["commission_rate"] == "0.10"


def test_offsets_are_normalised_to_utc() -> None:
    document = wire(EventType.DEAL_SIGNED)
    document["time"] = "2025-04-01T14:00:00+02:00"
    event = decode(Topic.CAMPAIGN_DEALS, to_bytes(document))
    assert event.time == EXAMPLE_TIME
    assert event.time.utcoffset() == timedelta(0)
    assert json.loads(encode(event))["time"] == "2025-04-01T12:00:00Z"


def test_secret_destination_is_hidden_but_travels() -> None:
    event = valid_example(EventType.CREATOR_PAYOUT_ACCOUNT_UPSERTED)
    secret = "tok_wise_8f2c1a"
    assert secret not in repr(event)
    assert secret not in str(event)
    assert secret not in repr(event.model_dump())
    assert secret.encode() in encode(event)
    decoded = decode(Topic.CREATOR_PAYOUT_ACCOUNTS, encode(event))
    assert isinstance(decoded.data, PayoutAccountUpserted)
    assert decoded.data.destination.get_secret_value() == secret
    assert secret not in repr(decoded)


def test_external_inputs_may_leave_optional_fields_out() -> None:
    document = wire(EventType.POST_METRICS_OBSERVED)
    for optional in ("deal_id", "caption", "tags"):
        del document["data"][optional]
    del document["subject"]
    del document["datacontenttype"]
    event = decode(Topic.TRACKING_POST_METRICS, to_bytes(document))
    assert event.data.deal_id is None
    assert event.data.tags == ()


def test_an_order_as_v1_shops_send_it_still_validates() -> None:
    """The fields clicks brought to orders are optional: an order of a shop that never heard
    of them (exactly the v1.0 document) decodes, with each of them None."""
    v1_order = {
        "specversion": "1.0",
        "id": "shop-17",
        "source": "https://shop.example",
        "type": "order.redeemed",
        "time": "2025-04-05T10:12:00Z",
        "subject": "JANE10",
        "datacontenttype": "application/json",
        "data": {
            "order_id": "ord-5531",
            "promo_code": "JANE10",
            "amount": {"amount": "64.90", "currency": "USD"},
            "occurred_at": "2025-04-05T10:12:00Z",
        },
    }
    event = decode(Topic.TRACKING_ORDERS, to_bytes(v1_order))
    new_fields = ("visitor_id", "click_id", "landing_utm", "shipping_country", "referrer")
    assert [getattr(event.data, name) for name in new_fields] == [None] * 5
    # And the example, which carries them all, says something in each.
    example = decode(Topic.TRACKING_ORDERS, encode(valid_example(EventType.ORDER_REDEEMED)))
    assert all(getattr(example.data, name) is not None for name in new_fields)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"visitor_id": "not-a-hash"}, "visitor_id"),
        (
            {"visitor_id": "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"},
            "visitor_id",
        ),
        ({"link_id": None, "utm": None}, "link_id"),
        ({"link_id": None, "utm": {}}, "utm"),
    ],
)
def test_a_click_needs_a_hashed_visitor_and_a_link_or_utm(
    change: dict[str, Any], field: str
) -> None:
    document = wire(EventType.LINK_CLICKED)
    document["data"].update(change)
    error = refusal(Topic.TRACKING_CLICKS, to_bytes(document))
    assert "link_id" in str(error) or field in str(error)


def test_an_attribution_model_is_one_of_the_six_with_bounded_windows() -> None:
    document = wire(EventType.ATTRIBUTION_MODEL_SET)
    del document["data"]["lookback_days"]
    event = decode(Topic.CAMPAIGN_DEALS, to_bytes(document))
    assert (event.data.lookback_days, event.data.half_life_days) == (30, 7)
    for bad in ({"model": "data_driven"}, {"lookback_days": 0}, {"lookback_days": 91}):
        broken = wire(EventType.ATTRIBUTION_MODEL_SET)
        broken["data"].update(bad)
        refusal(Topic.CAMPAIGN_DEALS, to_bytes(broken))


def test_a_deal_may_name_its_audience_countries_and_a_campaign_its_leaked_orders_policy() -> None:
    deal = wire(EventType.DEAL_SIGNED)
    del deal["data"]["audience_countries"]  # as v1 brands send it: still valid
    assert decode(Topic.CAMPAIGN_DEALS, to_bytes(deal)).data.audience_countries is None
    deal["data"]["audience_countries"] = ["US", "CA"]
    assert decode(Topic.CAMPAIGN_DEALS, to_bytes(deal)).data.audience_countries == ("US", "CA")
    for bad in ([], ["US", "US"], ["us"], ["USA"], "US"):
        broken = wire(EventType.DEAL_SIGNED)
        broken["data"]["audience_countries"] = bad
        assert "audience_countries" in str(refusal(Topic.CAMPAIGN_DEALS, to_bytes(broken)))
    setting = wire(EventType.ATTRIBUTION_MODEL_SET)
    del setting["data"]["leaked_orders"]
    assert decode(Topic.CAMPAIGN_DEALS, to_bytes(setting)).data.leaked_orders == "credit"
    setting["data"]["leaked_orders"] = "withhold"
    assert decode(Topic.CAMPAIGN_DEALS, to_bytes(setting)).data.leaked_orders == "withhold"
    setting["data"]["leaked_orders"] = "refund"
    assert "leaked_orders" in str(refusal(Topic.CAMPAIGN_DEALS, to_bytes(setting)))


# --- make_event and keys --------------------------------------------------------------------


def test_make_event_fills_defaults() -> None:
    before = datetime.now(UTC)
    event = make_event(deal(), source="tests")
    assert event.type == "deal.signed"
    assert event.subject == "deal-42"
    assert uuid.UUID(event.id).version == 4
    assert before <= event.time <= datetime.now(UTC)
    assert event_key(event) == b"deal-42"


@pytest.mark.parametrize("status", ["scheduled", "held", "sent", "failed", "settled"])
def test_make_event_takes_payout_type_from_status(status: str) -> None:
    event = make_event(payout(status), source="payouts")
    assert event.type == f"payout.{status}"
    assert event_key(event) == b"deal-42"


def test_make_event_refuses_a_type_that_does_not_fit_the_data() -> None:
    with pytest.raises(ValueError, match=r"payout\.held"):
        make_event(payout("sent"), type=EventType.PAYOUT_HELD, source="payouts")
    with pytest.raises(ValueError, match=r"order\.redeemed"):
        make_event(deal(), type=EventType.ORDER_REDEEMED, source="tests")
    with pytest.raises(UnknownEventType):
        make_event(deal(), type="deal.renegotiated", source="tests")


def test_type_for_data_rejects_foreign_models() -> None:
    class Stranger(BaseModel):
        pass

    with pytest.raises(UnknownEventType):
        type_for_data(Stranger())


def test_events_are_frozen() -> None:
    event = valid_example(EventType.DEAL_SIGNED)
    with pytest.raises(ValidationError):
        event.id = "other"
    with pytest.raises(ValidationError):
        event.data.fee = None


def test_python_construction_obeys_the_wire_rules() -> None:
    fields = deal().model_dump()
    with pytest.raises(ValidationError, match="commission_rate"):
        DealSigned(**{**fields, "commission_rate": 0.1})
    with pytest.raises(ValidationError, match="finite"):
        DealSigned(**{**fields, "commission_rate": Decimal("NaN")})
    with pytest.raises(ValidationError, match="zone"):
        DealSigned(**{**fields, "starts_at": datetime(2025, 4, 1)})  # naive on purpose
    assert DealSigned(**fields) == deal()


def test_payout_status_change_has_a_type_per_status() -> None:
    for status in ("scheduled", "held", "sent", "failed", "settled"):
        data = payout(status)
        assert isinstance(data, PayoutStatusChanged)
        assert spec_for_type(data.event_type).data_model is PayoutStatusChanged


# --- unknown fields -------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", EXTERNAL_TYPES)
def test_external_inputs_reject_unknown_data_fields(event_type: str) -> None:
    document = wire(event_type)
    document["data"]["surprise"] = 1
    error = refusal(topic_of(event_type), to_bytes(document))
    assert error.error_class == "SchemaViolation"
    assert "data.surprise" in error.reason


@pytest.mark.parametrize("event_type", INTERNAL_TYPES)
def test_internal_events_tolerate_unknown_data_fields(event_type: str) -> None:
    document = wire(event_type)
    document["data"]["added_in_v1_1"] = {"anything": [1, 2]}
    event = decode(topic_of(event_type), to_bytes(document))
    assert event == valid_example(event_type)


def test_nested_internal_models_tolerate_unknown_fields() -> None:
    document = wire(EventType.MATCH_SUGGESTED)
    document["data"]["suggestions"][0]["novelty"] = 0.3
    assert decode(Topic.MATCH_SUGGESTIONS, to_bytes(document)) == valid_example(
        EventType.MATCH_SUGGESTED
    )


# --- hand-picked refusals -------------------------------------------------------------------


def _raw(event_type: str, old: bytes, new: bytes) -> bytes:
    """The valid example's bytes with `old` replaced by `new`: JSON no parser builds."""
    return encode(valid_example(event_type)).replace(old, new)


def _with_type(event_type: str, new_type: str) -> bytes:
    document = wire(event_type)
    document["type"] = new_type
    return to_bytes(document)


# (topic, bytes, error class, what the reason must contain)
RAW_REFUSALS = [
    pytest.param(Topic.CAMPAIGN_DEALS, b"deal signed!", "InvalidJSON", ("JSON",), id="not JSON"),
    pytest.param(
        Topic.CREATOR_PROFILES,
        _raw(EventType.CREATOR_PROFILE_UPSERTED, b'"avg_likes":2150.5', b'"avg_likes":NaN'),
        "InvalidJSON",
        ("data.avg_likes",),
        id="NaN token, with its path",
    ),
    pytest.param(
        Topic.TRACKING_ATTRIBUTION,
        _raw(EventType.ATTRIBUTION_UPDATED, b'"data":{', b'"data":{"extra":[1,-Infinity],'),
        "InvalidJSON",
        ("data.extra[1]",),
        id="Infinity token, even in tolerated extras",
    ),
    pytest.param(
        Topic.CAMPAIGN_DEALS, b"[1, 2]", "SchemaViolation", ("object",), id="JSON not an object"
    ),
    pytest.param(
        Topic.CAMPAIGN_DEALS,
        _with_type(EventType.DEAL_SIGNED, "deal.renegotiated"),
        "UnknownEventType",
        ("deal.renegotiated",),
        id="unknown event type",
    ),
    pytest.param(
        Topic.TRACKING_ORDERS,
        encode(valid_example(EventType.DEAL_SIGNED)),
        "WrongTopic",
        ("type", "campaign.deals"),
        id="type on the wrong topic",
    ),
    pytest.param(
        "campaign.deals.v2",
        encode(valid_example(EventType.DEAL_SIGNED)),
        "WrongTopic",
        ("campaign.deals.v2",),
        id="unknown topic",
    ),
]


@pytest.mark.parametrize(("topic", "raw", "error_class", "fragments"), RAW_REFUSALS)
def test_refusal_says_what_is_wrong(
    topic: str, raw: bytes, error_class: str, fragments: tuple[str, ...]
) -> None:
    error = refusal(topic, raw)
    assert error.error_class == error_class
    for fragment in fragments:
        assert fragment in error.reason, error.reason


def test_an_unknown_event_type_is_named_first() -> None:
    error = refusal(Topic.CAMPAIGN_DEALS, _with_type(EventType.DEAL_SIGNED, "deal.renegotiated"))
    assert error.reason.startswith("type")


def test_oversized_message() -> None:
    raw = encode(valid_example(EventType.DEAL_SIGNED))
    error = refusal(Topic.CAMPAIGN_DEALS, raw, max_bytes=len(raw) - 1)
    assert error.error_class == "TooLarge"
    assert str(len(raw)) in error.reason
    assert decode(Topic.CAMPAIGN_DEALS, raw, max_bytes=len(raw)).type == "deal.signed"


DELETE = object()

P = EventType.CREATOR_PROFILE_UPSERTED
D = EventType.DEAL_SIGNED
M = EventType.MATCH_REQUESTED
FX = EventType.FX_RATES_PUBLISHED
A = EventType.ATTRIBUTION_UPDATED
PM = EventType.POST_METRICS_OBSERVED
PA = EventType.CREATOR_PAYOUT_ACCOUNT_UPSERTED

# (event type, path to change, new value, reason must start with, reason must contain)
REFUSALS = [
    pytest.param(
        EventType.MATCH_SUGGESTED,
        "traceparent",
        "00-abc",
        "traceparent",
        "unknown field",
        id="unknown envelope attribute",
    ),
    pytest.param(
        EventType.PAYOUT_SENT,
        "data.status",
        "held",
        "data.status",
        "payout.sent",
        id="payout status not that of the type",
    ),
    pytest.param(P, "specversion", "0.3", "specversion", "specversion", id="wrong specversion"),
    pytest.param(P, "time", "2025-04-01T12:00:00", "time", "zone", id="naive time"),
    pytest.param(P, "time", 1743508800, "time", "RFC 3339", id="epoch time"),
    pytest.param(P, "time", "1743508800", "time", "RFC 3339", id="epoch time as text"),
    pytest.param(
        P,
        "time",
        "2026-11-24T10:60:00Z",
        "time",
        "'2026-11-24T10:60:00Z' is not an RFC 3339",
        id="minute 60",
    ),
    pytest.param(
        D,
        "data.deliverables.1.due_by",
        "2025-05-01T00:00:00",
        "data.deliverables[1].due_by",
        "zone",
        id="naive due_by",
    ),
    pytest.param(P, "id", "", "id", "at least 1", id="empty id"),
    pytest.param(P, "id", "a b", "id", "whitespace", id="id with space"),
    pytest.param(P, "data.followers", -1, "data.followers", "-1", id="negative counter"),
    pytest.param(P, "data.followers", 48200.0, "data.followers", "48200.0", id="float counter"),
    pytest.param(
        P, "data.followers", "48200", "data.followers", "valid integer", id="string counter"
    ),
    pytest.param(
        P, "data.posts_last_30d", True, "data.posts_last_30d", "valid integer", id="bool counter"
    ),
    pytest.param(P, "data.followers", 10**13, "data.followers", "less than", id="huge counter"),
    pytest.param(
        P,
        "data.audience.countries.US",
        1.5,
        "data.audience.countries.US",
        "1.5",
        id="share above 1",
    ),
    pytest.param(
        P,
        "data.audience.countries.CA",
        0.5,
        "data.audience.countries",
        "sum",
        id="country shares over 1",
    ),
    pytest.param(
        P, "data.audience.age.65+", 0.2, "data.audience.age", "sum", id="age shares over 1"
    ),
    pytest.param(
        P,
        "data.audience.gender.male",
        0.5,
        "data.audience.gender",
        "sum",
        id="gender shares over 1",
    ),
    pytest.param(
        P, "data.audience.age.18-25", 0.01, "data.audience.age", "18-25", id="unknown age bucket"
    ),
    pytest.param(P, "data.country", "us", "data.country", "'us'", id="lowercase country"),
    pytest.param(P, "data.country", "XX", "data.country", "'XX'", id="unknown country"),
    pytest.param(
        P,
        "data.audience.countries.us",
        0.01,
        "data.audience.countries.us",
        "'us'",
        id="lowercase audience country",
    ),
    pytest.param(P, "data.language", "EN", "data.language", "ISO 639-1", id="uppercase language"),
    pytest.param(
        P, "data.payout_currency", "ABC", "data.payout_currency", "ABC", id="unknown currency"
    ),
    pytest.param(
        P, "data.payout_currency", "usd", "data.payout_currency", "usd", id="lowercase currency"
    ),
    pytest.param(D, "data.fee.currency", "XYZ", "data.fee.currency", "XYZ", id="money currency"),
    pytest.param(
        D,
        "data.fee.amount",
        450.0,
        "data.fee.amount",
        "decimal string",
        id="money amount as number",
    ),
    pytest.param(
        D,
        "data.fee",
        {"amount": "450.5", "currency": "JPY"},
        "data.fee",
        "JPY",
        id="JPY with decimals",
    ),
    pytest.param(D, "data.fee.amount", "-1.00", "data.fee", "negative", id="negative fee"),
    pytest.param(D, "data.fee.amount", "NaN", "data.fee.amount", "NaN", id="money NaN string"),
    pytest.param(
        D,
        "data.commission_rate",
        0.1,
        "data.commission_rate",
        "decimal string",
        id="rate as number",
    ),
    pytest.param(
        D, "data.commission_rate", "1.5", "data.commission_rate", "1.5", id="rate above 1"
    ),
    pytest.param(
        D,
        "data.commission_rate",
        "1E-1",
        "data.commission_rate",
        "exponent",
        id="rate with exponent",
    ),
    pytest.param(P, "data.handle", "x" * 201, "data.handle", "200", id="string over bound"),
    pytest.param(P, "data.bio", "x" * 5001, "data.bio", "5000", id="bio over bound"),
    pytest.param(P, "data.topics", ["t"] * 51, "data.topics", "50", id="list over bound"),
    pytest.param(
        P, "data.topics.0", "a\u0000b", "data.topics[0]", "control", id="control char in tag"
    ),
    pytest.param(P, "data.platform", "myspace", "data.platform", "myspace", id="unknown platform"),
    pytest.param(
        P,
        "data.rate_card.tweet",
        {"amount": "1.00", "currency": "USD"},
        "data.rate_card.tweet",
        "tweet",
        id="unknown rate card kind",
    ),
    pytest.param(
        D,
        "data.ends_at",
        "2025-03-01T00:00:00Z",
        "data.ends_at",
        "starts_at",
        id="ends before start",
    ),
    pytest.param(
        D,
        "data.ends_at",
        "2025-04-01T12:00:00Z",
        "data.ends_at",
        "starts_at",
        id="empty deal period",
    ),
    pytest.param(
        D,
        "data.deliverables.1.deliverable_id",
        "dl-1",
        "data.deliverables",
        "dl-1",
        id="duplicate deliverable ids",
    ),
    pytest.param(
        D, "data.deliverables", [], "data.deliverables", "at least 1", id="no deliverables"
    ),
    pytest.param(
        D, "data.promo_codes", ["A", "A"], "data.promo_codes", "'A'", id="duplicate promo codes"
    ),
    pytest.param(
        D,
        "data.attribution_window_days",
        366,
        "data.attribution_window_days",
        "365",
        id="attribution window",
    ),
    pytest.param(
        PM,
        "data.observed_at",
        "2025-04-02T00:00:00Z",
        "data.observed_at",
        "posted_at",
        id="observed before posted",
    ),
    pytest.param(PM, "data.post_id", DELETE, "data.post_id", "missing", id="missing field"),
    pytest.param(M, "data.limit", 501, "data.limit", "500", id="limit out of range"),
    pytest.param(
        M,
        "data.target_audience.gender",
        "other",
        "data.target_audience.gender",
        "other",
        id="target gender",
    ),
    pytest.param(
        M,
        "data.exclude_creator_ids",
        ["c"] * 10_001,
        "data.exclude_creator_ids",
        "10000",
        id="excluded ids over bound",
    ),
    pytest.param(
        EventType.MATCH_SUGGESTED,
        "data.suggestions.1.rank",
        1,
        "data.suggestions",
        "rank",
        id="duplicate ranks",
    ),
    pytest.param(
        EventType.MATCH_FEEDBACK,
        "data.decision",
        "maybe",
        "data.decision",
        "maybe",
        id="feedback decision",
    ),
    pytest.param(PA, "data.tax_form.type", "W-2", "data.tax_form.type", "W-2", id="tax form type"),
    pytest.param(
        PA,
        "data.destination",
        "",
        "data.destination",
        "1 to 512 characters",
        id="empty destination",
    ),
    pytest.param(
        EventType.BRAND_FUNDED,
        "data.amount.amount",
        "-50.00",
        "data.amount",
        "-50.00 USD is negative; a funding must be more than zero",
        id="negative funding",
    ),
    pytest.param(
        EventType.BRAND_FUNDED,
        "data.amount.amount",
        "0.00",
        "data.amount",
        "0.00 USD is zero; a funding must be more than zero",
        id="zero funding",
    ),
    pytest.param(FX, "data.rates.USD", "1.1", "data.rates", "base", id="fx base rate"),
    pytest.param(FX, "data.rates.EUR", "0", "data.rates.EUR", "greater than 0", id="fx zero rate"),
    pytest.param(
        FX, "data.rates.EUR", 0.92, "data.rates.EUR", "decimal string", id="fx rate as number"
    ),
    pytest.param(FX, "data.rates.EURO", "1.0", "data.rates.EURO", "EURO", id="fx unknown currency"),
    pytest.param(A, "data.cpm", 14.75, "data.cpm", "decimal string", id="ratio as number"),
    pytest.param(A, "data.roas", "-1", "data.roas", "greater than", id="negative ratio"),
    pytest.param(
        P,
        "data.audience.countries.US",
        "NaN",
        "data.audience.countries.US",
        "number",
        id="nan share",
    ),
]


def _changed(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(leaf) if leaf.isdigit() else leaf
    if value is DELETE:
        del node[key]
    else:
        node[key] = value


@pytest.mark.parametrize(("event_type", "path", "value", "field", "detail"), REFUSALS)
def test_refusal_names_the_field(
    event_type: EventType, path: str, value: Any, field: str, detail: str
) -> None:
    document = wire(event_type)
    _changed(document, path, value)
    error = refusal(topic_of(event_type), to_bytes(document))
    assert error.error_class == "SchemaViolation"
    assert error.reason.startswith(field), error.reason
    assert detail in error.reason, error.reason
    assert len(error.reason) <= 500
    assert "\n" not in error.reason


def test_a_refused_text_is_quoted_once() -> None:
    document = wire(EventType.MATCH_REQUESTED)
    document["data"]["target_audience"]["countries"] = ["XX"]
    error = refusal(Topic.BRAND_MATCH_REQUESTS, to_bytes(document))
    assert error.reason == (
        "data.target_audience.countries[0]: 'XX' is not an ISO 3166-1 alpha-2 country code"
    )
    document = wire(EventType.MATCH_REQUESTED)
    document["data"]["limit"] = 0
    error = refusal(Topic.BRAND_MATCH_REQUESTS, to_bytes(document))
    assert error.reason.endswith("(got 0)")


def test_a_reason_names_the_first_errors_and_counts_the_rest() -> None:
    document = wire(EventType.ORDER_REDEEMED)
    document["data"]["promo_code"] = "EX TA"
    for name in ("w", "x", "y", "z"):
        document["data"][name] = 1
    error = refusal(Topic.TRACKING_ORDERS, to_bytes(document))
    named = error.reason.split(" | ")
    assert named[0].startswith("data.promo_code: must not contain whitespace"), error.reason
    assert named[1].startswith("data.w: unknown field") and named[2].startswith("data.x:")
    assert error.reason.endswith(" [+2 more]"), error.reason


def test_reason_is_truncated() -> None:
    document = wire(EventType.DEAL_SIGNED)
    document["data"]["promo_codes"] = ["P" * 500]
    error = refusal(Topic.CAMPAIGN_DEALS, to_bytes(document))
    assert error.reason.startswith("data.promo_codes[0]")
    assert len(error.reason) <= 500
    assert str(error) == f"SchemaViolation: {error.reason}"


# --- fuzzing --------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "US", "USD", "1.0", "-1", "2025-04-01T12:00:00Z", "deal.signed"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*prefix, index))


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[head] = _replaced(document[head], tuple(rest), value)
    return copy


def _decodes_or_refuses(topic: str, raw: bytes) -> None:
    try:
        decode(topic, raw)
    except EventDecodeError as error:
        assert error.error_class in {
            "InvalidJSON",
            "SchemaViolation",
            "UnknownEventType",
            "WrongTopic",
            "TooLarge",
        }
        assert len(error.reason) <= 500


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=512), topic=st.sampled_from(TOPICS))
def test_arbitrary_bytes_only_raise_event_decode_error(raw: bytes, topic: str) -> None:
    _decodes_or_refuses(topic, raw)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_type=st.sampled_from(ALL_TYPES), data=st.data())
def test_mutated_events_only_raise_event_decode_error(event_type: str, data: st.DataObject) -> None:
    document = wire(event_type)
    path = data.draw(st.sampled_from(list(_paths(document))))
    mutated = _replaced(document, path, data.draw(JSON_VALUES))
    _decodes_or_refuses(topic_of(event_type), json.dumps(mutated).encode())


def test_decode_returns_cloud_events() -> None:
    for event_type in ALL_TYPES:
        event = decode(topic_of(event_type), encode(valid_example(event_type)))
        assert isinstance(event, CloudEvent)
        assert event.datacontenttype == "application/json"


def test_money_examples_are_exact_decimals() -> None:
    event = valid_example(EventType.ATTRIBUTION_UPDATED)
    assert event.data.spend.amount == Decimal("450.00")
    assert isinstance(event.data.cpm, Decimal)
    assert event.data.cpa is None


def test_payout_account_destination_is_a_secret() -> None:
    assert isinstance(payout_account().destination, SecretStr)
    assert "tok_wise" not in repr(payout_account())


def test_a_time_past_year_9999_in_utc_is_a_schema_violation() -> None:
    event = json.loads(encode(valid_example("fx.rates.published")))
    event["time"] = "9999-12-31T23:00:00-05:00"
    with pytest.raises(EventDecodeError) as caught:
        decode("fx.rates", json.dumps(event).encode())
    assert caught.value.error_class == "SchemaViolation"
    assert "out of range" in caught.value.reason
