-- Payout destinations encrypted at rest (AES-256-GCM under PAYOUTS_DESTINATION_KEY,
-- services/payouts/destinations.py). New rows carry only destination_sealed. Rows stored
-- before this migration keep their token in destination_token until the payouts service
-- starts with its key and seals them (PgPayouts.seal_plain_destinations), which also clears
-- the plain column.
ALTER TABLE payouts_accounts ADD COLUMN destination_sealed bytea;
ALTER TABLE payouts_accounts ALTER COLUMN destination_token DROP NOT NULL;
ALTER TABLE payouts_accounts ADD CONSTRAINT payouts_accounts_destination_kept
    CHECK (destination_sealed IS NOT NULL OR destination_token IS NOT NULL);
