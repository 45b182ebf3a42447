-- Rankers are learned per brand and go live only through the promotion gate: each stored
-- model names its brand, whether it is in use and why. The request itself is kept with its
-- answer: a brand's past briefs are the probes of the gate and where the creators it never
-- saw are drawn from.
ALTER TABLE matching_models
    ADD COLUMN brand_id    text,                                   -- NULL: trained for everyone
    ADD COLUMN status      text        NOT NULL DEFAULT 'retired'
        CHECK (status IN ('candidate', 'live', 'retired', 'rolled_back')),
    ADD COLUMN reason      text        NOT NULL DEFAULT
        'trained for every brand at once, before per-brand learning: never used again',
    ADD COLUMN metrics     jsonb       NOT NULL DEFAULT '{}',      -- the gate's figures
    ADD COLUMN promoted_at timestamptz;                            -- when it last went live
ALTER TABLE matching_models ALTER COLUMN status DROP DEFAULT;
ALTER TABLE matching_models ALTER COLUMN reason DROP DEFAULT;
CREATE UNIQUE INDEX matching_models_live ON matching_models (brand_id) WHERE status = 'live';

ALTER TABLE matching_requests ADD COLUMN request jsonb;            -- the `match.requested` data
CREATE INDEX matching_requests_brand ON matching_requests (brand_id, answered_at);

-- Labels are split by arrival for the gate: one consumed batch (one transaction) holds many,
-- so each row takes the time it was written, not its transaction's start.
ALTER TABLE matching_feedback ALTER COLUMN received_at SET DEFAULT clock_timestamp();
ALTER TABLE matching_performance ALTER COLUMN received_at SET DEFAULT clock_timestamp();
