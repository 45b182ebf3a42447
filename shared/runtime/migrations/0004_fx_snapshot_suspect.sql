-- Why a snapshot must not be used for money (a rate moved too far or is absurd); NULL when
-- trusted. Set once, by whichever service stores the snapshot first (shared/fx_moves.py).
ALTER TABLE fx_snapshots ADD COLUMN suspect_reason text;
CREATE INDEX fx_snapshots_trusted_as_of ON fx_snapshots (as_of DESC) WHERE suspect_reason IS NULL;
