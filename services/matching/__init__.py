"""Matching service: scores creators against a brand's niche and audience (not built yet)."""
