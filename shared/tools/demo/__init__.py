"""The `make demo` campaign: a generated scenario with its ground truth, and its player."""
