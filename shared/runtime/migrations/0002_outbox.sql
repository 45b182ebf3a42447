-- Events that must not be lost are written here in the same transaction as the state change
-- and published by shared.outbox.OutboxRelay in `seq` order (DESIGN.md §2).
CREATE TABLE outbox (
    seq          bigserial   PRIMARY KEY,
    event_id     text        NOT NULL UNIQUE,
    topic        text        NOT NULL,
    kafka_key    bytea,
    value        bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
