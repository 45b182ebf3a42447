-- Every follower count a creator's profile events reported, by event time: the profile keeps
-- only the newest, and a sudden jump between two of them (bought followers) is a trust flag.
CREATE TABLE matching_follower_history (
    creator_id  text        NOT NULL,
    observed_at timestamptz NOT NULL,   -- the profile event's time
    followers   bigint      NOT NULL,
    PRIMARY KEY (creator_id, observed_at)
);
