"""The brand API: read-only JSON over a brand's deals, attribution and payouts, for that
brand's API keys only (docs/architecture.md §12)."""
