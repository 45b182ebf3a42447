-- Where payouts went before a running destination cool-off (domain.accounts.route_of): an
-- account changed back to it ends the cool-off at once.
ALTER TABLE payouts_accounts ADD COLUMN cooling_off_from text;
