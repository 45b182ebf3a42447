-- The key each payout destination is sealed with: its key id, bytes 2 to 5 of the sealed
-- value (services/payouts/destinations.py). When PAYOUTS_DESTINATION_KEY rotates, the rows
-- under another key than the new one are found by it and re-encrypted in batches
-- (`creatorflow payouts rotate-key`), and a service refuses to start with a key ring that
-- cannot open one of the key ids stored.
ALTER TABLE payouts_accounts ADD COLUMN destination_key_id bytea
    GENERATED ALWAYS AS (substring(destination_sealed FROM 2 FOR 4)) STORED;
CREATE INDEX payouts_accounts_destination_key_id ON payouts_accounts (destination_key_id);
