"""Matching's rules: pure, no I/O, no wire models (docs/architecture.md §1)."""
