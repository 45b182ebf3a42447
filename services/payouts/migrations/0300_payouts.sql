-- Payouts service state (services/payouts). Money is numeric with its ISO 4217 currency code;
-- the domain quantises every amount before it is stored.

CREATE TABLE payouts_deals (
    deal_id                 text        PRIMARY KEY,
    campaign_id             text        NOT NULL,
    brand_id                text        NOT NULL,
    creator_id              text        NOT NULL,
    fee_amount              numeric     NOT NULL CHECK (fee_amount >= 0),
    currency                char(3)     NOT NULL,
    commission_rate         numeric     NOT NULL CHECK (commission_rate BETWEEN 0 AND 1),
    -- [{"deliverable_id": "dl-1", "count": 2}, ...] in the order the deal lists them
    deliverables            jsonb       NOT NULL,
    ends_at                 timestamptz NOT NULL,
    attribution_window_days integer     NOT NULL,
    attribution_closes_at   timestamptz NOT NULL,
    commission_done         boolean     NOT NULL DEFAULT false,
    signed_event_id         text        NOT NULL,
    stored_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payouts_deals_commission_due ON payouts_deals (attribution_closes_at)
    WHERE NOT commission_done AND commission_rate > 0;

-- Confirmations may arrive before their deal (different topics): kept regardless.
CREATE TABLE payouts_confirmations (
    deal_id        text        NOT NULL,
    deliverable_id text        NOT NULL,
    confirmed_by   text        NOT NULL,
    confirmed_at   timestamptz NOT NULL,
    PRIMARY KEY (deal_id, deliverable_id)
);

-- destination_token is a payment provider token (never a raw account number; never logged).
CREATE TABLE payouts_accounts (
    creator_id        text        PRIMARY KEY,
    method            text        NOT NULL,
    destination_token text        NOT NULL,
    currency          char(3)     NOT NULL,
    tax_form_type     text        NOT NULL,
    tax_form_status   text        NOT NULL,
    updated_at        timestamptz NOT NULL
);

-- The latest attribution per deal (by as_of), the basis of its commission.
CREATE TABLE payouts_attribution (
    deal_id          text        PRIMARY KEY,
    revenue_amount   numeric     NOT NULL,
    revenue_currency char(3)     NOT NULL,
    as_of            timestamptz NOT NULL
);

CREATE TABLE payouts_payouts (
    payout_id           text        PRIMARY KEY,
    deal_id             text        NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('fee', 'commission')),
    milestone           text        NOT NULL,
    creator_id          text        NOT NULL,
    brand_id            text        NOT NULL,
    gross_amount        numeric     NOT NULL CHECK (gross_amount >= 0),
    gross_currency      char(3)     NOT NULL,
    platform_fee_amount numeric     NOT NULL CHECK (platform_fee_amount >= 0),
    net_amount          numeric     CHECK (net_amount >= 0),
    net_currency        char(3),
    fx_rate             numeric     CHECK (fx_rate > 0),
    fx_as_of            timestamptz,
    fx_source           text,
    status              text        NOT NULL
        CHECK (status IN ('scheduled', 'held', 'sent', 'failed', 'settled')),
    hold_code           text,
    hold_reason         text,
    failure_reason      text,
    attempts            integer     NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz,
    provider_ref        text,
    version             integer     NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- The business key: a deal's fee (per milestone) and commission are each paid once.
    CONSTRAINT payouts_business_key UNIQUE (deal_id, kind, milestone),
    CHECK ((net_amount IS NULL) = (net_currency IS NULL))
);
CREATE INDEX payouts_due ON payouts_payouts (next_attempt_at) WHERE status = 'scheduled';
CREATE INDEX payouts_held_by_creator ON payouts_payouts (creator_id) WHERE status = 'held';
CREATE INDEX payouts_sent ON payouts_payouts (updated_at) WHERE status = 'sent';
CREATE INDEX payouts_by_creator ON payouts_payouts (creator_id);

-- Double-entry ledger. A transfer is one step of one payout (transfer_id = payout:kind, so a
-- step is recorded once); its postings sum to zero per currency. Append-only.
CREATE TABLE payouts_transfers (
    transfer_id text        PRIMARY KEY,
    payout_id   text        NOT NULL REFERENCES payouts_payouts (payout_id),
    kind        text        NOT NULL,
    posted_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE payouts_postings (
    posting_id  bigserial   PRIMARY KEY,
    transfer_id text        NOT NULL REFERENCES payouts_transfers (transfer_id),
    account     text        NOT NULL,
    amount      numeric     NOT NULL CHECK (amount <> 0),
    currency    char(3)     NOT NULL
);
CREATE INDEX payouts_postings_by_transfer ON payouts_postings (transfer_id);
CREATE INDEX payouts_postings_by_account ON payouts_postings (account, currency);

CREATE FUNCTION payouts_ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the payouts ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER payouts_transfers_append_only
    BEFORE UPDATE OR DELETE ON payouts_transfers
    FOR EACH ROW EXECUTE FUNCTION payouts_ledger_is_append_only();
CREATE TRIGGER payouts_transfers_no_truncate
    BEFORE TRUNCATE ON payouts_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION payouts_ledger_is_append_only();
CREATE TRIGGER payouts_postings_append_only
    BEFORE UPDATE OR DELETE ON payouts_postings
    FOR EACH ROW EXECUTE FUNCTION payouts_ledger_is_append_only();
CREATE TRIGGER payouts_postings_no_truncate
    BEFORE TRUNCATE ON payouts_postings
    FOR EACH STATEMENT EXECUTE FUNCTION payouts_ledger_is_append_only();

-- Checked at commit, so a transfer's postings can be inserted one by one.
CREATE FUNCTION payouts_transfer_balances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM payouts_postings WHERE transfer_id = NEW.transfer_id
        GROUP BY currency HAVING sum(amount) <> 0
    ) THEN
        RAISE EXCEPTION 'transfer % does not sum to zero in every currency', NEW.transfer_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER payouts_postings_balance
    AFTER INSERT ON payouts_postings DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION payouts_transfer_balances();
