"""Logging and metrics shared by every process."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

import structlog
from prometheus_client import Counter, Gauge, Histogram

from shared.contract.events.vocabulary import PAYOUT_STATUSES

EVENTS_CONSUMED = Counter(
    "creatorflow_events_consumed_total", "Events handled successfully", ["topic"]
)
EVENTS_FAILED = Counter(
    "creatorflow_events_failed_total",
    "Handler attempts that failed (retried or sent to the DLQ)",
    ["topic", "error_class"],
)
EVENTS_APPLIED = Counter(
    "creatorflow_events_applied_total",
    "Events a service applied for the first time (shared.runtime.unit_of_work)",
    ["service"],
)
EVENTS_SEEN_BEFORE = Counter(
    "creatorflow_events_seen_before_total",
    "Events consumed again after they were applied (replays, redeliveries): skipped by the inbox",
    ["service"],
)
EVENTS_ENQUEUED = Counter(
    "creatorflow_events_enqueued_total",
    "Events a service committed to its outbox, by type",
    ["service", "type"],
)
EVENTS_DEAD_LETTERED = Counter(
    "creatorflow_events_dead_lettered_total", "Events sent to the topic's DLQ", ["topic"]
)
UNSIGNED_ACCEPTED = Counter(
    "creatorflow_unsigned_events_accepted_total",
    "Events that should be signed, accepted unsigned because the profile is development",
    ["type"],
)
HANDLER_SECONDS = Histogram(
    "creatorflow_handler_seconds",
    "Time to handle one message or one batch, retries included",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

CONSUMER_LAG = Gauge(
    "creatorflow_consumer_lag",
    "Messages between the consumer group's committed offset and the partition's end, asked "
    "of the broker every 5 s (it grows while a handler is blocked and nothing is fetched)",
    ["topic", "partition"],
)

FX_SNAPSHOTS_SUSPECT = Counter(
    "creatorflow_fx_snapshots_suspect_total",
    "FX snapshots stored as suspect (a rate moved too far or is absurd): alert on any increase",
)

STALE_AMENDMENTS = Counter(
    "creatorflow_stale_amendments_total",
    "deal.amended events ignored: their version is not above the one in force, or they were "
    "sent after the deal's cancellation (replays and reordered retries do this)",
    ["service"],
)

PAYOUT_DESTINATION_COOLOFFS = Counter(
    "creatorflow_payout_destination_cooloffs_total",
    "Payout destinations changed while payouts were in flight, now cooling off: alert on any "
    "increase (a takeover of a creator's account looks like this)",
)

PAYOUT_TRANSITIONS = Counter(
    "creatorflow_payout_transitions_total",
    "Payout status changes committed (each one a payouts.status event), by the status reached",
    ["status"],
)
# Seconds from a sub-second payout to one held for days (no account yet, stale FX, retries).
_PAYOUT_LATENCY_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400, 259200,
)  # fmt: skip
PAYOUT_CONFIRMATION_TO_SENT = Histogram(
    "creatorflow_payout_confirmation_to_sent_seconds",
    "Fee payouts: from the confirmation that made the fee owed (its confirmed_at) to the "
    "payout recorded as sent",
    buckets=_PAYOUT_LATENCY_BUCKETS,
)
PAYOUT_POST_TO_SENT = Histogram(
    "creatorflow_payout_post_to_sent_seconds",
    "Fee payouts owed on an automatic confirmation: from the post that completed it reaching "
    "CreatorFlow (its Kafka record's timestamp) to the payout recorded as sent",
    buckets=_PAYOUT_LATENCY_BUCKETS,
)

PAYOUT_RATE_LIMIT_MODE = Gauge(
    "creatorflow_payout_rate_limit_mode",
    "1 for the mode the rails' rate limits are kept in: redis (one bucket per rail shared by "
    "every payouts replica) or local (Redis unreachable: each replica at its share of the limit)",
    ["mode"],
)

LEDGER_CHECK_PROBLEMS = Gauge(
    "creatorflow_ledger_check_problems",
    "Broken ledger invariants found by the payouts service's last periodic ledger check (what "
    "`creatorflow payouts ledger-check` reports): alert on anything above 0",
)
LEDGER_CHECKS = Counter(
    "creatorflow_ledger_checks_total",
    "Periodic ledger checks by result: ok, failed (invariants broken) or error (could not run)",
    ["result"],
)
for _result in ("ok", "failed", "error"):
    LEDGER_CHECKS.labels(result=_result)
WEBHOOKS = Counter(
    "creatorflow_payout_webhooks_total",
    "Rail webhook deliveries by rail and outcome: applied, unchanged, duplicate, ignored, "
    "unknown_transfer, refused (signature or timestamp), malformed, error (answered 503)",
    ["rail", "outcome"],
)
WEBHOOK_NONCE_STORE_DOWN = Counter(
    "creatorflow_payout_webhook_nonce_store_errors_total",
    "Webhook deliveries whose Redis nonce could not be read or written: the database alone "
    "decided whether they were duplicates",
)
PAYOUT_EMAILS = Counter(
    "creatorflow_payout_emails_total",
    "Creators' payout status e-mails by outcome: sent (accepted by the SMTP server), failed "
    "(refused, or not sent after every attempt), unknown (the sender stopped between starting "
    "the SMTP transaction and recording its end: not sent again), no_address (a status change "
    "of a creator without an e-mail address: nothing to send)",
    ["outcome"],
)
for _outcome in ("sent", "failed", "unknown", "no_address"):
    PAYOUT_EMAILS.labels(outcome=_outcome)

for _status in PAYOUT_STATUSES:  # every series exists from the start, so rate() sees the first
    PAYOUT_TRANSITIONS.labels(status=_status)


def configure_logging(service: str, *, level: str = "INFO", json: bool = False) -> None:
    """Structured logs on stderr, one line per event, labelled with the service name."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json
        # Plain tracebacks: the default rich ones print every frame's local variables, which
        # would put passwords, keys and payout destinations in the logs.
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LibraryFormatter(service))
    handler.addFilter(RepeatsMuted())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


class RepeatsMuted(logging.Filter):
    """Lets a library's repeated message through once per `seconds`.

    With a broker away, aiokafka logs a failed connection about a hundred times a second in
    every service. A message is the same when its logger, level and text are (a failure of
    another node or for another reason is another message); the first that comes after a
    muted spell says how many were left out (`muted`, which LibraryFormatter shows)."""

    # Messages remembered at most; past that, those whose spell is over are forgotten.
    MOST = 1000

    def __init__(self, seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._seconds = seconds
        self._clock = clock
        self._spells: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()  # libraries log from worker threads too

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        now = self._clock()
        with self._lock:
            spell = self._spells.get(key)
            if spell is not None and now - spell[0] < self._seconds:
                self._spells[key] = (spell[0], spell[1] + 1)
                return False
            if len(self._spells) >= self.MOST:
                self._spells = {k: v for k, v in self._spells.items() if now - v[0] < self._seconds}
            self._spells[key] = (now, 0)
        if spell is not None and spell[1]:
            record.muted = spell[1]
        return True


class LibraryFormatter(logging.Formatter):
    """Libraries' own log records (asyncpg, aiokafka, ...) as one line in our style.

    A warning's exception is summed up on the same line: during a database outage asyncpg
    warns about every reconnection attempt, and a traceback each time would bury everything
    else. Errors keep their traceback.
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = (
            f"{stamp}Z [{record.levelname.lower():<9}] {record.getMessage():<30} "
            f"logger={record.name} service={self._service}"
        )
        muted = getattr(record, "muted", 0)
        if muted:
            line += f" muted={muted}"  # as many like it in the spell before this one
        if record.exc_info and record.exc_info[1] is not None:
            if record.levelno >= logging.ERROR:
                return f"{line}\n{self.formatException(record.exc_info)}"
            error = record.exc_info[1]
            line += f" error='{type(error).__name__}: {error}'"
        return line
