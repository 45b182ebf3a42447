"""Wiring of the tracking service: one consumer group over its six input topics, each batch
one unit of work (shared.runtime.unit_of_work) that `handlers.handle_batch` applies.

The next batch is read, decoded and translated (`handlers.read_ahead`) while one is applied
(`shared.runtime.pipeline`), and a batch's offsets are committed only after its transaction.
Outgoing events (`attribution.updated`, `promo-code.leak-suspected`, `deliverable.confirmed`)
leave through the outbox relay, so none is lost if the process dies after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from services.tracking.handlers import make_handler, read_ahead
from services.tracking.settings import TrackingSettings
from services.tracking.store.port import TrackingTransaction
from services.tracking.store.postgres import PostgresTrackingStore
from shared.contract.events import Topic
from shared.runtime.service import Background, Resources, Setup
from shared.runtime.unit_of_work import UnitsOfWork

SERVICE: Final = "tracking"
GROUP_ID: Final = SERVICE  # the consumer group
INPUT_TOPICS: Final = (
    Topic.CAMPAIGN_DEALS,
    Topic.TRACKING_POST_METRICS,
    Topic.TRACKING_ORDERS,
    Topic.TRACKING_CLICKS,
    Topic.FX_RATES,
    Topic.DELIVERABLES_CONFIRMED,
)
# Published through the outbox; the registry routes each event type to its topic.
OUTPUT_TOPICS: Final = (
    Topic.TRACKING_ATTRIBUTION,
    Topic.TRACKING_CAMPAIGN_ATTRIBUTION,
    Topic.DELIVERABLES_CONFIRMED,
)
# Larger batches amortise the fixed cost of a transaction and the per-deal work (every
# touched deal's totals are read and published once per batch); under light load a batch is
# whatever arrived while the previous one was applied, so latency stays low (`make bench`).
MAX_RECORDS: Final = 20_000
BATCH_TIMEOUT_MS: Final = 20


def make_setup(
    *,
    group_id: str = GROUP_ID,
    inbox_consumer: str = SERVICE,
    max_records: int = MAX_RECORDS,
    batch_timeout_ms: int = BATCH_TIMEOUT_MS,
) -> Setup:
    """The service's setup for `shared.runtime.service.ServiceRuntime`.

    `group_id` is the Kafka consumer group; `inbox_consumer` the name under which applied
    event ids are recorded. A new group with the same inbox name re-reads every topic from
    the start and changes nothing.
    """

    async def setup(resources: Resources) -> Sequence[Background]:
        store = PostgresTrackingStore(resources.pool, consumer=inbox_consumer)
        handler = make_handler(
            Decimal(str(resources.settings.fx_max_rate_move)),
            TrackingSettings().leak_thresholds(),
        )
        units: UnitsOfWork[TrackingTransaction] = UnitsOfWork(
            SERVICE, store, handler, read_ahead=read_ahead
        )
        consume = resources.consume(
            INPUT_TOPICS,
            group_id=group_id,
            units=units,
            max_records=max_records,
            batch_timeout_ms=batch_timeout_ms,
        )
        relay = resources.outbox_relay(inbox_consumer)
        return [consume, relay.run]

    return setup


setup: Final = make_setup()
