-- Feedback events are identified by (source, id), as in the inbox (migration 0005): two
-- brands' tools may pick the same id.
ALTER TABLE matching_feedback ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE matching_feedback ALTER COLUMN source DROP DEFAULT;
ALTER TABLE matching_feedback DROP CONSTRAINT matching_feedback_pkey;
ALTER TABLE matching_feedback ADD PRIMARY KEY (source, event_id);
