"""Tracking's persistence: the port and its PostgreSQL adapter."""
