"""The creator payout page, served by the payouts service on a port of its own
(docs/architecture.md §11): magic links, sessions and the read-only page."""
