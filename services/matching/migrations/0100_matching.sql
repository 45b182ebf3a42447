-- Matching: the creator profiles the index is rebuilt from, what was suggested (with the
-- features at that moment, for learning), the brands' feedback, realised performance,
-- hires per campaign, and the versioned rankers.
CREATE TABLE matching_creators (
    creator_id  text        PRIMARY KEY,
    profile     jsonb       NOT NULL,   -- the `creator.profile.upserted` data, as received
    event_time  timestamptz NOT NULL,   -- the newest profile wins, whatever the arrival order
    event_id    text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE matching_hires (
    deal_id     text        PRIMARY KEY,
    campaign_id text        NOT NULL,
    creator_id  text        NOT NULL,
    signed_at   timestamptz NOT NULL
);
CREATE INDEX matching_hires_campaign ON matching_hires (campaign_id);

CREATE TABLE matching_requests (
    request_id    text        PRIMARY KEY,
    campaign_id   text        NOT NULL,
    brand_id      text        NOT NULL,
    model_version text        NOT NULL,
    fx_as_of      timestamptz,            -- the FX snapshot the costs were converted with
    fx_source     text,
    filtered      jsonb       NOT NULL,
    event_id      text        NOT NULL,   -- id of the `match.suggested` event
    answered_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE matching_suggestions (
    request_id  text             NOT NULL REFERENCES matching_requests (request_id),
    creator_id  text             NOT NULL,
    campaign_id text             NOT NULL,
    rank        integer          NOT NULL,
    score       double precision NOT NULL,
    features    real[]           NOT NULL,   -- in services.matching.features.FEATURES order
    PRIMARY KEY (request_id, creator_id)
);
CREATE INDEX matching_suggestions_campaign ON matching_suggestions (campaign_id, creator_id);

CREATE TABLE matching_feedback (
    event_id    text        PRIMARY KEY,
    campaign_id text        NOT NULL,
    creator_id  text        NOT NULL,
    request_id  text,
    decision    text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX matching_feedback_received ON matching_feedback (received_at);

CREATE TABLE matching_performance (
    deal_id     text        PRIMARY KEY,
    campaign_id text        NOT NULL,
    creator_id  text        NOT NULL,
    roas        numeric,                 -- null while spend is zero
    cpe         numeric,
    as_of       timestamptz NOT NULL,    -- the latest attribution wins
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX matching_performance_creator ON matching_performance (creator_id);

CREATE TABLE matching_models (
    version     text        PRIMARY KEY,
    seq         bigserial   UNIQUE,
    ranker      jsonb       NOT NULL,    -- LinearRanker.to_json()
    labels      integer     NOT NULL,    -- how many labels it was trained on
    trained_at  timestamptz NOT NULL DEFAULT now()
);
