-- The `as_of` of the attribution last published for each deal (docs/architecture.md §10).
-- Figures worked out again under a new attribution model or new deal terms may reflect older
-- inputs of their own than the figures they replace; consumers keep a deal's figures with the
-- latest `as_of`, so a deal's published `as_of` never goes back.
ALTER TABLE tracking_attribution ADD COLUMN published_as_of timestamptz;
UPDATE tracking_attribution SET published_as_of = as_of;
