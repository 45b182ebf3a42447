"""Settings of the matching service (environment variables prefixed `MATCHING_`).

Read once by the service's bootstrap (`app.setup`); everything else receives what it needs.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.matching.domain.learning import LearningSettings
from services.matching.domain.scoring import ScoringSettings


class MatchingSettings(BaseSettings):
    """Ranking knobs, retraining cadence and consumer sizing."""

    model_config = SettingsConfigDict(
        env_prefix="MATCHING_", env_file=None, extra="ignore", frozen=True
    )

    # MMR trade-off between relevance (1) and variety (0). `match.requested` has no field for
    # it in v1, so every request uses this value.
    diversity_trade_off: float = Field(0.7, ge=0.0, le=1.0)
    # Least audience share in the target countries; below it a creator is `audience_mismatch`.
    min_audience_share: float = Field(0.2, ge=0.0, le=1.0)
    roas_prior: float = Field(2.0, gt=0.0)
    roas_prior_strength: float = Field(3.0, gt=0.0)

    # A brand's new ranker is trained once this many of its labels (feedback + outcomes)
    # arrived since its last one, or at the latest every `retrain_interval_seconds` if any
    # arrived; it goes live only through the promotion gate (services/matching/domain/learning.py).
    retrain_every_labels: int = Field(200, ge=1)
    retrain_interval_seconds: float = Field(3600.0, gt=0)
    retrain_check_seconds: float = Field(5.0, gt=0)
    # Fewest labels of a brand before it gets a ranker of its own.
    learning_min_labels: int = Field(30, ge=4)
    # Newest share of a brand's labels held out to judge a new ranker.
    learning_held_out_share: float = Field(0.25, gt=0.0, lt=1.0)
    # Least niche precision on the brand's probe requests for a ranker to go live.
    learning_min_niche_precision: float = Field(0.95, ge=0.0, le=1.0)
    # How many of the brand's latest requests serve as probes and as sources of unseen
    # creators (weak negatives).
    learning_probe_requests: int = Field(5, ge=1)

    # Last places of a shortlist (at most one per five) given to creators drawn at random,
    # seeded by the request's event id, among eligible ones beyond it: marked `exploration`,
    # so feedback also labels creators the ranking would not show. 0 turns it off.
    exploration_slots: int = Field(2, ge=0, le=10)

    rebuild_chunk: int = Field(20_000, ge=100)
    batch_max_records: int = Field(500, ge=1)
    # How long the broker may hold a fetch with no data: bounds how late a request is seen.
    fetch_max_wait_ms: int = Field(10, ge=1, le=500)
    seed: int = 0

    def learning(self) -> LearningSettings:
        return LearningSettings(
            min_labels=self.learning_min_labels,
            held_out_share=self.learning_held_out_share,
            min_niche_precision=self.learning_min_niche_precision,
            seed=self.seed,
        )

    def scoring(self) -> ScoringSettings:
        return ScoringSettings(
            diversity_trade_off=self.diversity_trade_off,
            min_audience_share=self.min_audience_share,
            roas_prior=self.roas_prior,
            roas_prior_strength=self.roas_prior_strength,
            exploration_slots=self.exploration_slots,
        )
