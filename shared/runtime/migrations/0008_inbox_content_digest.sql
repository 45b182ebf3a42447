-- What each applied event said (a hash of its type and data), so that another event sent
-- under an id already used is refused rather than skipped as a repeat of the first.
-- NULL for rows from before, and for CreatorFlow's own events (which may announce a fact
-- again under the id derived from it). Secret fields (a payout destination) are left out.
ALTER TABLE processed_events ADD COLUMN content_digest bytea;
