-- CloudEvents ids are unique per source only, and outside producers choose them: two shops
-- may both send an event "1". The inbox dedupes on (consumer, source, id) from now on.
-- Rows recorded before have source '' and still match their id from any source, so events
-- applied before this migration stay no-ops when replayed (shared/inbox.py).
ALTER TABLE processed_events ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE processed_events ALTER COLUMN source DROP DEFAULT;
ALTER TABLE processed_events DROP CONSTRAINT processed_events_pkey;
ALTER TABLE processed_events ADD PRIMARY KEY (consumer, source, event_id);
