-- The rails' webhook events (services/payouts/webhooks.py), each recorded by the rail's event
-- id in the transaction that applies it: a duplicate delivery finds its id and changes
-- nothing, whatever Redis remembers (its nonces are a fast path, this table is the truth).
CREATE TABLE payouts_webhook_events (
    rail        text        NOT NULL,
    event_id    text        NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (rail, event_id)
);

-- A webhook names the rail's transfer; its payout is found by that reference.
CREATE INDEX payouts_payouts_provider_ref ON payouts_payouts (provider_ref)
    WHERE provider_ref IS NOT NULL;
