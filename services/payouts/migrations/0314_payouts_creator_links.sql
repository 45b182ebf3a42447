-- The creator payout page (services/payouts/creator_page/). A magic link and the session it
-- is swapped for are stored only as the SHA-256 of their token: a copy of this table opens
-- nobody's page. A link is redeemed once (used_at), before expires_at; a session is scoped
-- to one creator and read-only.
CREATE TABLE payouts_creator_links (
    token_hash  bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    creator_id  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL CHECK (expires_at > created_at),
    used_at     timestamptz
);
CREATE INDEX payouts_creator_links_expiry ON payouts_creator_links (expires_at);

CREATE TABLE payouts_creator_sessions (
    token_hash  bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    creator_id  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL CHECK (expires_at > created_at)
);
CREATE INDEX payouts_creator_sessions_expiry ON payouts_creator_sessions (expires_at);

-- The page's timeline is each payout's published status events, read from the outbox by
-- deal (the events' key).
CREATE INDEX payouts_outbox_status_by_deal ON outbox (kafka_key) WHERE topic = 'payouts.status';
