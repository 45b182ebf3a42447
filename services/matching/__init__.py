"""Matching service: explainable, diversified creator suggestions for a brand's request,
ranked by a model that learns from feedback (`python -m services.matching`)."""
