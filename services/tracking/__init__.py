"""Tracking service: running attribution and deliverable confirmation (not built yet)."""
