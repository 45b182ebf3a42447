"""CreatorFlow services: matching, tracking and payouts."""
