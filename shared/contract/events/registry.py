"""Every v1 event: its topic, type, payload model and Kafka key (docs/architecture.md §3).

Code names topics and types through `Topic` and `EventType`, never as string literals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache, cached_property
from types import UnionType
from typing import Annotated, Any, Final, TypeAlias, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr

from shared.contract.events.brands import BrandFunded
from shared.contract.events.creators import CreatorProfileUpserted, PayoutAccountUpserted
from shared.contract.events.deals import (
    AttributionModelSet,
    DealAmended,
    DealCancelled,
    DealSigned,
)
from shared.contract.events.envelope import CloudEvent
from shared.contract.events.fx import FxRatesPublished
from shared.contract.events.keys import SigningKeyRegistered, SigningKeyRevoked
from shared.contract.events.matching import MatchFeedback, MatchRequested, MatchSuggested
from shared.contract.events.payouts import PayoutStatusChanged
from shared.contract.events.tracking import (
    AttributionUpdated,
    CampaignAttributionUpdated,
    DeliverableConfirmed,
    LinkClicked,
    OrderRedeemed,
    OrderRefunded,
    PostMetricsObserved,
    PromoCodeLeakSuspected,
)
from shared.contract.events.vocabulary import PAYOUT_STATUSES
from shared.contract.signing import Party

DLQ_SUFFIX: Final = ".dlq"

PayloadModel: TypeAlias = type[BaseModel]


class Topic(StrEnum):
    CREATOR_PROFILES = "creator.profiles"
    CREATOR_PAYOUT_ACCOUNTS = "creator.payout-accounts"
    BRAND_MATCH_REQUESTS = "brand.match-requests"
    MATCH_SUGGESTIONS = "match.suggestions"
    MATCH_FEEDBACK = "match.feedback"
    CAMPAIGN_DEALS = "campaign.deals"
    BRAND_FUNDING = "brand.funding"
    TRACKING_POST_METRICS = "tracking.post-metrics"
    TRACKING_ORDERS = "tracking.orders"
    TRACKING_CLICKS = "tracking.clicks"
    TRACKING_ATTRIBUTION = "tracking.attribution"
    TRACKING_CAMPAIGN_ATTRIBUTION = "tracking.campaign-attribution"
    DELIVERABLES_CONFIRMED = "deliverables.confirmed"
    FX_RATES = "fx.rates"
    PAYOUTS_STATUS = "payouts.status"
    OPERATOR_SIGNING_KEYS = "operator.signing-keys"


class EventType(StrEnum):
    CREATOR_PROFILE_UPSERTED = "creator.profile.upserted"
    CREATOR_PAYOUT_ACCOUNT_UPSERTED = "creator.payout-account.upserted"
    MATCH_REQUESTED = "match.requested"
    MATCH_SUGGESTED = "match.suggested"
    MATCH_FEEDBACK = "match.feedback"
    DEAL_SIGNED = "deal.signed"
    DEAL_AMENDED = "deal.amended"
    DEAL_CANCELLED = "deal.cancelled"
    ATTRIBUTION_MODEL_SET = "campaign.attribution-model.set"
    BRAND_FUNDED = "brand.funded"
    POST_METRICS_OBSERVED = "post.metrics.observed"
    ORDER_REDEEMED = "order.redeemed"
    ORDER_REFUNDED = "order.refunded"
    LINK_CLICKED = "link.clicked"
    ATTRIBUTION_UPDATED = "attribution.updated"
    PROMO_CODE_LEAK_SUSPECTED = "promo-code.leak-suspected"
    CAMPAIGN_ATTRIBUTION_UPDATED = "campaign.attribution.updated"
    DELIVERABLE_CONFIRMED = "deliverable.confirmed"
    FX_RATES_PUBLISHED = "fx.rates.published"
    PAYOUT_SCHEDULED = "payout.scheduled"
    PAYOUT_HELD = "payout.held"
    PAYOUT_SENT = "payout.sent"
    PAYOUT_FAILED = "payout.failed"
    PAYOUT_SETTLED = "payout.settled"
    SIGNING_KEY_REGISTERED = "signing-key.registered"
    SIGNING_KEY_REVOKED = "signing-key.revoked"


class UnknownEventType(LookupError):
    """No v1 event has this type."""


@dataclass(frozen=True)
class EventSpec:
    """One row of the contract: `type` events go to `topic`, keyed by `data.<key_field>`.

    `external` events come from outside CreatorFlow and reject unknown data fields.
    `newest_by` names the time that decides which version of an entity is the newest, where
    a consumer keeps only that one: `"time"` (the envelope's) or a data field. Such a time
    chosen in the future would win over every later version, so consumers refuse it.
    `signed_by` is the party entitled to send the event (shared/contract/signing.py), and
    `owner_field` the data field that names that party, where the event names it.
    `also_signed_by` is a second party entitled to send it: our services, for a
    `deliverable.confirmed` that tracking issues itself.
    """

    topic: str
    type: str
    data_model: PayloadModel
    key_field: str
    external: bool
    newest_by: str | None = None
    signed_by: Party | None = None
    owner_field: str | None = None
    also_signed_by: Party | None = None

    @cached_property
    def secret_fields(self) -> frozenset[str]:
        """Data fields typed `SecretStr` (e.g. a payout destination): never logged, quoted in
        an error or kept in a dead-letter copy. Worked out once: the inbox asks per event."""
        return frozenset(
            name
            for name, field in self.data_model.model_fields.items()
            if _secret(field.annotation)
        )


def _secret(annotation: Any) -> bool:
    """Whether a field's type is `SecretStr`, optional or annotated (`Email | None`)."""
    if annotation is SecretStr:
        return True
    if get_origin(annotation) is Annotated:
        return _secret(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return any(_secret(a) for a in get_args(annotation) if a is not type(None))
    return False


def _from_a_brand(
    topic: str,
    event_type: str,
    data_model: PayloadModel,
    key_field: str,
    newest_by: str | None = None,
) -> EventSpec:
    """A brand's own event: it comes from outside, signed by the brand it names in
    `brand_id`. Deals, match requests and funding are all sent this way."""
    return EventSpec(
        topic,
        event_type,
        data_model,
        key_field,
        external=True,
        newest_by=newest_by,
        signed_by=Party.BRAND,
        owner_field="brand_id",
    )


def _from_our_service(
    topic: str, event_type: str, data_model: PayloadModel, key_field: str
) -> EventSpec:
    """An event one of our services publishes: internal, signed with a service key."""
    return EventSpec(
        topic, event_type, data_model, key_field, external=False, signed_by=Party.SERVICE
    )


EVENT_SPECS: Final[tuple[EventSpec, ...]] = (
    EventSpec(
        Topic.CREATOR_PROFILES,
        EventType.CREATOR_PROFILE_UPSERTED,
        CreatorProfileUpserted,
        "creator_id",
        external=True,
    ),
    EventSpec(
        Topic.CREATOR_PAYOUT_ACCOUNTS,
        EventType.CREATOR_PAYOUT_ACCOUNT_UPSERTED,
        PayoutAccountUpserted,
        "creator_id",
        external=True,
        newest_by="time",
        signed_by=Party.ONBOARDING,
    ),
    _from_a_brand(
        Topic.BRAND_MATCH_REQUESTS, EventType.MATCH_REQUESTED, MatchRequested, "campaign_id"
    ),
    _from_our_service(
        Topic.MATCH_SUGGESTIONS, EventType.MATCH_SUGGESTED, MatchSuggested, "campaign_id"
    ),
    EventSpec(
        Topic.MATCH_FEEDBACK,
        EventType.MATCH_FEEDBACK,
        MatchFeedback,
        "campaign_id",
        external=True,
        signed_by=Party.BRAND,
    ),
    # A deal, its later versions and its end, all on the deal's partition (keyed by deal).
    *(
        _from_a_brand(Topic.CAMPAIGN_DEALS, event_type, data_model, "deal_id")
        for event_type, data_model in (
            (EventType.DEAL_SIGNED, DealSigned),
            (EventType.DEAL_AMENDED, DealAmended),
            (EventType.DEAL_CANCELLED, DealCancelled),
        )
    ),
    # Keyed by campaign: payouts and matching, which also read this topic, ignore it.
    _from_a_brand(
        Topic.CAMPAIGN_DEALS,
        EventType.ATTRIBUTION_MODEL_SET,
        AttributionModelSet,
        "campaign_id",
        newest_by="time",
    ),
    _from_a_brand(Topic.BRAND_FUNDING, EventType.BRAND_FUNDED, BrandFunded, "brand_id"),
    EventSpec(
        Topic.TRACKING_POST_METRICS,
        EventType.POST_METRICS_OBSERVED,
        PostMetricsObserved,
        "post_id",
        external=True,
    ),
    EventSpec(
        Topic.TRACKING_ORDERS,
        EventType.ORDER_REDEEMED,
        OrderRedeemed,
        "promo_code",
        external=True,
        signed_by=Party.SHOP,
    ),
    EventSpec(
        Topic.TRACKING_ORDERS,
        EventType.ORDER_REFUNDED,
        OrderRefunded,
        "promo_code",
        external=True,
        signed_by=Party.SHOP,
    ),
    # Keyed by deal, as deal.signed is: a click lands on the partition number of its deal.
    EventSpec(
        Topic.TRACKING_CLICKS,
        EventType.LINK_CLICKED,
        LinkClicked,
        "deal_id",
        external=True,
        signed_by=Party.SHOP,
    ),
    _from_our_service(
        Topic.TRACKING_ATTRIBUTION, EventType.ATTRIBUTION_UPDATED, AttributionUpdated, "deal_id"
    ),
    # Beside the attribution it changes, keyed by deal: a deal's alerts and figures in order.
    _from_our_service(
        Topic.TRACKING_ATTRIBUTION,
        EventType.PROMO_CODE_LEAK_SUSPECTED,
        PromoCodeLeakSuspected,
        "deal_id",
    ),
    # A topic of its own, keyed by campaign: what a brand's dashboard reads (and may compact).
    _from_our_service(
        Topic.TRACKING_CAMPAIGN_ATTRIBUTION,
        EventType.CAMPAIGN_ATTRIBUTION_UPDATED,
        CampaignAttributionUpdated,
        "campaign_id",
    ),
    EventSpec(
        Topic.DELIVERABLES_CONFIRMED,
        EventType.DELIVERABLE_CONFIRMED,
        DeliverableConfirmed,
        "deal_id",
        external=True,
        signed_by=Party.BRAND,
        also_signed_by=Party.SERVICE,
    ),
    EventSpec(
        Topic.FX_RATES,
        EventType.FX_RATES_PUBLISHED,
        FxRatesPublished,
        "base",
        external=True,
        newest_by="as_of",
    ),
    *(
        _from_our_service(
            Topic.PAYOUTS_STATUS, EventType(f"payout.{status}"), PayoutStatusChanged, "deal_id"
        )
        for status in PAYOUT_STATUSES
    ),
    # Written by operators only (a Kafka ACL): the topic's access is its authority.
    EventSpec(
        Topic.OPERATOR_SIGNING_KEYS,
        EventType.SIGNING_KEY_REGISTERED,
        SigningKeyRegistered,
        "key_id",
        external=True,
    ),
    EventSpec(
        Topic.OPERATOR_SIGNING_KEYS,
        EventType.SIGNING_KEY_REVOKED,
        SigningKeyRevoked,
        "key_id",
        external=True,
    ),
)

TOPICS: Final[tuple[str, ...]] = tuple(Topic)
SECRET_FIELDS: Final[frozenset[str]] = frozenset().union(*(s.secret_fields for s in EVENT_SPECS))
"""Every secret data field of the contract, whatever its type and topic."""

_SPEC_BY_TYPE: Final[dict[str, EventSpec]] = {spec.type: spec for spec in EVENT_SPECS}
_SPECS_BY_MODEL: Final[dict[type[BaseModel], list[EventSpec]]] = {}
for _spec in EVENT_SPECS:
    _SPECS_BY_MODEL.setdefault(_spec.data_model, []).append(_spec)


def spec_for_type(event_type: str) -> EventSpec:
    """The spec of `event_type`; raises UnknownEventType if no v1 event has that type."""
    try:
        return _SPEC_BY_TYPE[event_type]
    except KeyError:
        raise UnknownEventType(
            f"{event_type!r} is not a v1 event type; known types: {', '.join(_SPEC_BY_TYPE)}"
        ) from None


def specs_for_topic(topic: str) -> list[EventSpec]:
    """The specs of every type carried by `topic` (empty for an unknown topic)."""
    return [spec for spec in EVENT_SPECS if spec.topic == topic]


def secret_fields_of_topic(topic: str) -> frozenset[str]:
    """The secret data fields of every type `topic` carries (empty for an unknown topic)."""
    return frozenset().union(*(spec.secret_fields for spec in specs_for_topic(topic)))


@cache
def declared_fields_of_topic(topic: str) -> Mapping[str, frozenset[str]]:
    """The keys the contract declares at each object of `topic`'s events, by JSON path: ""
    the envelope, "data" its payload, "data.tax_form" a payload's nested object, ... Worked
    out once per topic: every dead letter and every record `tail` prints asks."""
    declared: dict[str, set[str]] = {"": set(CloudEvent.model_fields)}
    for spec in specs_for_topic(topic):
        _declare(spec.data_model, "data", declared)
    return {path: frozenset(keys) for path, keys in declared.items()}


def _declare(model: type[BaseModel], path: str, declared: dict[str, set[str]]) -> None:
    keys = declared.setdefault(path, set())
    for name, field in model.model_fields.items():
        key = field.alias or name
        keys.add(key)
        for nested in _models_in(field.annotation):
            _declare(nested, f"{path}.{key}", declared)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation names (`Model`, `Model | None`, `Annotated[...]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def type_for_data(data: BaseModel) -> str:
    """The event type `data` is published as (for payouts, decided by `data.status`)."""
    if isinstance(data, PayoutStatusChanged):
        return data.event_type
    specs = _SPECS_BY_MODEL.get(type(data), [])
    if len(specs) != 1:
        raise UnknownEventType(f"{type(data).__name__} is not the data model of one v1 event type")
    return specs[0].type


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return f"{topic}{DLQ_SUFFIX}"
