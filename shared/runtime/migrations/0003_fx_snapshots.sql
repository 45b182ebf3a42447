-- FX rate snapshots from `fx.rates`: reference data every service that converts money reads.
-- Rates are kept as decimal strings so no precision is lost.
CREATE TABLE fx_snapshots (
    base       char(3)     NOT NULL,
    as_of      timestamptz NOT NULL,
    source     text        NOT NULL,
    rates      jsonb       NOT NULL,
    event_id   text        NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (base, as_of, source)
);
CREATE INDEX fx_snapshots_as_of ON fx_snapshots (as_of DESC);
