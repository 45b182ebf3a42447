"""Settings of the matching service (environment variables prefixed `MATCHING_`).

Read once by the service's bootstrap (`app.setup`); everything else receives what it needs.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.matching.scoring import ScoringSettings


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

    # A new ranker is trained once this many labels (feedback + outcomes) arrived since the
    # last one, or at the latest every `retrain_interval_seconds` if any arrived.
    retrain_every_labels: int = Field(200, ge=1)
    retrain_interval_seconds: float = Field(3600.0, gt=0)
    retrain_check_seconds: float = Field(5.0, gt=0)

    rebuild_chunk: int = Field(20_000, ge=100)
    batch_max_records: int = Field(500, ge=1)
    # How long the broker may hold a fetch with no data: bounds how late a request is seen.
    fetch_max_wait_ms: int = Field(10, ge=1, le=500)
    seed: int = 0

    def scoring(self) -> ScoringSettings:
        return ScoringSettings(
            diversity_trade_off=self.diversity_trade_off,
            min_audience_share=self.min_audience_share,
            roas_prior=self.roas_prior,
            roas_prior_strength=self.roas_prior_strength,
        )
