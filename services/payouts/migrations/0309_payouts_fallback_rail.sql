-- A payout account may name a fallback rail, with its destination sealed as the main one is
-- (services/payouts/destinations.py). It is used only after the main rail refused a payout
-- with an error that proved nothing was executed.
ALTER TABLE payouts_accounts ADD COLUMN fallback_method text;
ALTER TABLE payouts_accounts ADD COLUMN fallback_destination_sealed bytea;
ALTER TABLE payouts_accounts ADD COLUMN fallback_destination_fingerprint bytea;
ALTER TABLE payouts_accounts ADD CONSTRAINT payouts_accounts_fallback_whole
    CHECK ((fallback_method IS NULL) = (fallback_destination_sealed IS NULL));
