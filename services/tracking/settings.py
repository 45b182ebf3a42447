"""Settings of the tracking service (environment variables prefixed `TRACKING_`).

Read once by the service's bootstrap (`app.make_setup`); everything else receives the values
it needs as arguments. docs/architecture.md §10 ("Leaked codes") says why the defaults are
what they are.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.tracking.domain.leaks import DEFAULT_COUPON_DOMAINS, LeakThresholds

DEFAULTS = LeakThresholds()


class TrackingSettings(BaseSettings):
    """When a promo code is suspected leaked (services/tracking/domain/leaks.py)."""

    model_config = SettingsConfigDict(env_prefix="TRACKING_", env_file=None, extra="ignore")

    # The window of the shipping-country and coupon-site rules, back from each order.
    leak_window_days: int = Field(DEFAULTS.window.days, ge=1, le=90)
    leak_abroad_share: Decimal = Field(DEFAULTS.abroad_share, ge=0, lt=1)
    leak_abroad_min_orders: int = Field(DEFAULTS.abroad_min_orders, ge=1)
    leak_coupon_share: Decimal = Field(DEFAULTS.coupon_share, ge=0, lt=1)
    leak_coupon_min_orders: int = Field(DEFAULTS.coupon_min_orders, ge=1)
    leak_burst_share_of_reach: Decimal = Field(DEFAULTS.burst_share_of_reach, gt=0, le=1)
    leak_burst_min_orders: int = Field(DEFAULTS.burst_min_orders, ge=1)
    # Comma-separated registrable domains; unset or empty: DEFAULT_COUPON_DOMAINS.
    leak_coupon_domains: str = ""

    @field_validator("leak_coupon_domains")
    @classmethod
    def _domains(cls, value: str) -> str:
        for domain in _split(value):
            if "." not in domain or "/" in domain or ":" in domain:
                raise ValueError(
                    f"{domain!r} is not a domain: give registrable domains such as "
                    "retailmenot.com, separated by commas"
                )
        return value

    def leak_thresholds(self) -> LeakThresholds:
        domains = frozenset(_split(self.leak_coupon_domains))
        return LeakThresholds(
            window=timedelta(days=self.leak_window_days),
            abroad_share=self.leak_abroad_share,
            abroad_min_orders=self.leak_abroad_min_orders,
            coupon_share=self.leak_coupon_share,
            coupon_min_orders=self.leak_coupon_min_orders,
            burst_share_of_reach=self.leak_burst_share_of_reach,
            burst_min_orders=self.leak_burst_min_orders,
            coupon_domains=domains or DEFAULT_COUPON_DOMAINS,
        )


def _split(domains: str) -> list[str]:
    return [d.strip().lower().rstrip(".") for d in domains.split(",") if d.strip()]
