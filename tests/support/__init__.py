"""Helpers every kind of test uses, each written once."""
