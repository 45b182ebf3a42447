-- Each service publishes its own outbox rows only: one relay per service leads (an advisory
-- lock per producer), so one service's relay never sends another's events. Rows written
-- before have producer '' and are published by whichever relay leads first.
ALTER TABLE outbox ADD COLUMN producer text NOT NULL DEFAULT '';
ALTER TABLE outbox ALTER COLUMN producer DROP DEFAULT;
CREATE INDEX outbox_unpublished_by_producer ON outbox (producer, seq) WHERE published_at IS NULL;
