-- A creator may have an account on several platforms (Instagram, TikTok, YouTube...): a
-- profile is kept per creator and platform, and so is its follower history (the counts of two
-- accounts are no history of one another).
ALTER TABLE matching_creators ADD COLUMN platform text;
UPDATE matching_creators SET platform = profile->>'platform';
ALTER TABLE matching_creators ALTER COLUMN platform SET NOT NULL;
ALTER TABLE matching_creators DROP CONSTRAINT matching_creators_pkey;
ALTER TABLE matching_creators ADD PRIMARY KEY (creator_id, platform);

ALTER TABLE matching_follower_history ADD COLUMN platform text;
-- Until now each creator had one profile: its counts were that account's.
UPDATE matching_follower_history h SET platform = c.platform
  FROM matching_creators c WHERE c.creator_id = h.creator_id;
DELETE FROM matching_follower_history WHERE platform IS NULL;  -- no profile: no account known
ALTER TABLE matching_follower_history ALTER COLUMN platform SET NOT NULL;
ALTER TABLE matching_follower_history DROP CONSTRAINT matching_follower_history_pkey;
ALTER TABLE matching_follower_history ADD PRIMARY KEY (creator_id, platform, observed_at);
