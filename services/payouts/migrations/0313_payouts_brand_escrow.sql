-- A brand's escrow is funded (brand.funded) and payouts draw on it only while it covers them
-- (services/payouts/domain/escrow.py).

-- Each funding once, by its id; its ledger transfer (brand_funding -> brand_escrow) names it.
CREATE TABLE payouts_brand_fundings (
    funding_id  text        PRIMARY KEY,
    brand_id    text        NOT NULL,
    amount      numeric     NOT NULL CHECK (amount > 0),
    currency    char(3)     NOT NULL,
    funded_at   timestamptz NOT NULL,
    event_id    text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payouts_brand_fundings_by_brand ON payouts_brand_fundings (brand_id, funded_at);

-- A transfer belongs to a payout or to a funding, never both.
ALTER TABLE payouts_transfers ALTER COLUMN payout_id DROP NOT NULL;
ALTER TABLE payouts_transfers
    ADD COLUMN funding_id text REFERENCES payouts_brand_fundings (funding_id);
ALTER TABLE payouts_transfers ADD CONSTRAINT payouts_transfer_of_payout_or_funding
    CHECK ((payout_id IS NULL) <> (funding_id IS NULL));

-- The escrow balance per brand and currency, kept by the postings themselves (the trigger
-- below), so a payout checks it without summing the brand's history. Transactions that draw
-- on or credit a brand's escrow serialise on the brand's advisory lock first.
CREATE TABLE payouts_brand_escrow (
    brand_id text    NOT NULL,
    currency char(3) NOT NULL,
    balance  numeric NOT NULL,
    PRIMARY KEY (brand_id, currency)
);
-- Before this release nothing funded an escrow: a brand that was paid for has a negative
-- balance here, which `payouts ledger-check` reports until fundings cover it.
INSERT INTO payouts_brand_escrow (brand_id, currency, balance)
SELECT substring(account FROM length('brand_escrow:') + 1), currency, sum(amount)
FROM payouts_postings WHERE account LIKE 'brand\_escrow:%'
GROUP BY account, currency;

CREATE FUNCTION payouts_escrow_follows_postings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payouts_brand_escrow (brand_id, currency, balance)
    VALUES (substring(NEW.account FROM length('brand_escrow:') + 1), NEW.currency, NEW.amount)
    ON CONFLICT (brand_id, currency)
        DO UPDATE SET balance = payouts_brand_escrow.balance + EXCLUDED.balance;
    RETURN NULL;
END
$$;
CREATE TRIGGER payouts_postings_escrow
    AFTER INSERT ON payouts_postings
    FOR EACH ROW WHEN (NEW.account LIKE 'brand\_escrow:%')
    EXECUTE FUNCTION payouts_escrow_follows_postings();

-- The payouts waiting for a brand's funds, in the order they are released.
CREATE INDEX payouts_awaiting_funds ON payouts_payouts (brand_id, fx_at, payout_id)
    WHERE status = 'held' AND hold_code = 'awaiting_funds';
