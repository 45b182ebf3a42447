"""Tracking service: exact running attribution per deal and campaign from post metrics and
promo-code orders, and automatic deliverable confirmation (`python -m services.tracking`)."""
