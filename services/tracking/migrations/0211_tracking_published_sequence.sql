-- The number of the attribution last published for each deal (`attribution.updated`'s
-- `sequence`, v1.10): consumers keep a deal's update with the greatest, whatever order they
-- read them in (docs/architecture.md §10).
ALTER TABLE tracking_attribution ADD COLUMN published_sequence bigint NOT NULL DEFAULT 0;
