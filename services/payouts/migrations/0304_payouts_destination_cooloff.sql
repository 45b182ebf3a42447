-- A destination that changes while a creator's payouts are in flight waits a cool-off
-- (PAYOUTS_DESTINATION_COOLOFF_SECONDS). The fingerprint (a keyed digest of creator and
-- destination) tells a changed destination from the same one sent again without opening it;
-- rows stored before have none, and their next change is compared by method only.
ALTER TABLE payouts_accounts ADD COLUMN destination_fingerprint bytea;
ALTER TABLE payouts_accounts ADD COLUMN cooling_off_until timestamptz;
