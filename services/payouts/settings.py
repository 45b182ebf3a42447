"""Settings of the payouts service (environment variables prefixed `PAYOUTS_`).

Read once by the service's bootstrap (`app.setup`) and by the CLI; everything else receives the
values it needs as arguments.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.payouts.destinations import (
    DEVELOPMENT_KEY,
    DEVELOPMENT_KEY_NAME,
    DestinationKeyError,
    decode_key,
)
from services.payouts.domain.terms import FeeSchedule
from shared.runtime.config import Profile

# "sandbox": the sandbox pays every method (development). "rails": each account's method is
# paid through its own rail, configured by its credentials below; a method whose rail is not
# configured is held. "stripe" is what "rails" was called when Stripe was the only rail.
ProviderName = Literal["sandbox", "rails", "stripe"]
# The creator page's port when a link is printed without PAYOUTS_PAGE_PORT or _URL set.
DEFAULT_PAGE_PORT = 8090


class PayoutsSettings(BaseSettings):
    """Fees, retry policy, dispatcher pacing and the payment provider."""

    # An empty variable counts as unset, as compose passes `${VAR:-}` through (an empty API
    # key would configure a rail that every call fails on). Validation errors would otherwise
    # quote every input, the API key included.
    model_config = SettingsConfigDict(
        env_prefix="PAYOUTS_",
        env_file=None,
        extra="ignore",
        env_ignore_empty=True,
        hide_input_in_errors=True,
    )

    # The platform's cut of every fee and commission, in basis points (100 bps = 1 %).
    platform_fee_bps: int = Field(0, ge=0, le=10_000)
    # "on_completion": the whole fee once every deliverable is confirmed; "per_deliverable":
    # the fee split by deliverable count, each part payable when its deliverable is confirmed.
    fee_schedule: FeeSchedule = "on_completion"

    # Read here too: production refuses the development destination key.
    profile: Profile = Field(Profile.DEVELOPMENT, validation_alias="CREATORFLOW_PROFILE")
    # AES-256 key (32 bytes, base64) that encrypts payout destinations at rest. Changing it
    # makes stored destinations unreadable: the service then refuses to start, unless the
    # key rotated away from is given as the previous one until `creatorflow payouts
    # rotate-key` has re-encrypted every destination with the new one.
    destination_key: SecretStr = SecretStr(DEVELOPMENT_KEY)
    destination_key_previous: SecretStr | None = None

    # A payout destination that changes while the creator's payouts are in flight (held or
    # scheduled) is paid to only after this cool-off: a takeover of the creator's onboarding
    # account would otherwise redirect money in seconds. A day gives the creator's notice and
    # an operator's alert (creatorflow_payout_destination_cooloffs_total) time to act.
    destination_cooloff_seconds: float = Field(86_400.0, ge=0)
    cooloff_check_seconds: float = Field(30.0, gt=0)

    # A payout converts at the FX snapshot in force when it became owed (its work confirmed,
    # its commission decided). A snapshot this much older than that moment says the feed had
    # stopped: the payout is held (`stale_fx`) until the first snapshot published after it.
    # A day suits feeds that publish at least daily; one that skips weekends needs 72 h.
    fx_max_age_seconds: float = Field(86_400.0, gt=0)

    provider: ProviderName = "sandbox"
    sandbox_latency_ms: float = Field(0.0, ge=0)
    sandbox_failure_rate: float = Field(0.0, ge=0, le=1)
    sandbox_seed: int = 0
    sandbox_settle_after_seconds: float = Field(0.0, ge=0)
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    # PayPal Payouts: the REST app's client id and secret (both, or neither).
    paypal_client_id: SecretStr | None = None
    paypal_client_secret: SecretStr | None = None
    paypal_api_base: str = "https://api-m.paypal.com"
    # Wise: an API token and the profile (business) whose balance funds the transfers.
    wise_api_token: SecretStr | None = None
    wise_profile_id: int | None = Field(None, ge=1)
    wise_api_base: str = "https://api.wise.com"
    provider_timeout_seconds: float = Field(10.0, gt=0)

    # The rails' webhooks, on the service's HTTP server (HTTP_PORT): POST /webhooks/stripe,
    # /webhooks/paypal, /webhooks/wise (services/payouts/webhooks.py). A rail without a secret
    # answers 404 on its route and accepts nothing. Stripe's is the endpoint's signing secret
    # (whsec_...), checked by Stripe's own scheme (the Stripe-Signature header). PayPal's and
    # Wise's are secrets of our own HMAC scheme (the CreatorFlow-Signature header), not those
    # rails' certificate schemes: README.md, "Rail webhooks".
    stripe_webhook_secret: SecretStr | None = None
    paypal_webhook_secret: SecretStr | None = None
    wise_webhook_secret: SecretStr | None = None
    # A delivery signed longer ago (or further ahead) than this is refused: Stripe's default.
    webhook_tolerance_seconds: float = Field(300.0, gt=0, le=3600)
    # How long Redis remembers a handled event id: a replay within the tolerance is refused
    # without reaching the database, and a rail's retries within this time too. Older ones
    # are found in the database (payouts_webhook_events), which stays the truth.
    webhook_nonce_ttl_seconds: float = Field(86_400.0, gt=0)
    # Each rail's rate limit in API requests a second, one token bucket per rail shared by
    # every payouts replica through Redis (docs/architecture.md §6). Stripe: 100 requests a
    # second in live mode for the whole account, but 25 a second for each endpoint unless it
    # says otherwise, and a payout's calls all go to /v1/transfers. PayPal and Wise publish no
    # number (both answer 429 when they judge traffic excessive): deliberately low defaults,
    # to raise to what the rail agrees for the account.
    stripe_rate_limit: float = Field(25.0, gt=1)
    paypal_rate_limit: float = Field(10.0, gt=1)
    wise_rate_limit: float = Field(10.0, gt=3)  # a Wise payout is 3 requests
    # Redis unreachable, each replica keeps its limits locally at 1/this of each rate: set it
    # to the number of payouts replicas (more is safe, fewer may exceed a rail's limit).
    expected_replicas: int = Field(2, ge=1, le=1000)
    # How often a replica that keeps its limits locally asks Redis again.
    rate_limit_recheck_seconds: float = Field(5.0, gt=0)

    # Provider failures are retried with exponential backoff, then the payout fails.
    max_attempts: int = Field(5, ge=1, le=100)
    retry_initial_seconds: float = Field(1.0, gt=0)
    retry_max_seconds: float = Field(300.0, gt=0)

    # How long a Kafka fetch may wait for data. The embedded broker does not answer a waiting
    # fetch when data arrives, so this bounds the consumer's added latency. Not 0: the
    # consumer would ask the broker in a tight loop and starve the rest of the process.
    fetch_max_wait_ms: int = Field(10, ge=1, le=500)
    # How long the consumer waits to fill a batch once it has some records (not 0, likewise).
    batch_timeout_ms: int = Field(5, ge=1, le=1000)

    dispatch_batch: int = Field(100, ge=1, le=1000)
    # Dispatcher rounds run at once per instance (each claims up to `dispatch_batch`): one
    # claims while another waits for the rail or records its answers.
    dispatch_rounds: int = Field(2, ge=1, le=16)
    # A claimed payout is invisible to other dispatchers this long. Its calls are given up (in
    # doubt) a second before the lease ends, so it must cover a lookup and a send.
    dispatch_lease_seconds: float = Field(60.0, gt=0)
    dispatch_idle_seconds: float = Field(1.0, gt=0)
    settle_check_seconds: float = Field(1.0, gt=0)
    settle_check_max_seconds: float = Field(3600.0, gt=0)
    commission_check_seconds: float = Field(60.0, gt=0)
    # The periodic ledger check behind the ledger alert reads every payout and transfer.
    ledger_check_seconds: float = Field(3600.0, gt=0)
    # Attribution updates may trail the window's close; wait this long before paying commission.
    commission_grace_seconds: float = Field(3600.0, ge=0)
    # After that first payment, late orders (dated inside the window) and refunds still move
    # the commission this many days after the window closed: a top-up payout, or a clawback
    # repaid from the creator's next payouts. Then it is final. 30 days covers a shop's usual
    # 30-day return period and the EU's 14-day right of withdrawal plus delivery, and late
    # order reports; shops with longer return periods need more. 0: final at once.
    commission_adjustment_days: float = Field(30.0, ge=0)

    # The creator payout page (services/payouts/creator_page/) on a port of its own, apart
    # from /healthz and /metrics: unset, the page is not served. It needs Redis (REDIS_URL)
    # for its rate limits. `page_url` is the address creators reach it at, which links printed
    # by `creatorflow creators link` start with (default: http://<host>:<port>).
    page_port: int | None = Field(None, ge=0, le=65535)
    page_host: str = "127.0.0.1"
    page_url: str | None = None
    # A magic link works once, for at most 15 minutes; the session it opens this long.
    page_link_minutes: float = Field(15.0, gt=0, le=15)
    page_session_hours: float = Field(12.0, gt=0, le=24 * 30)

    # The brand API (services/payouts/brand_api/, docs/architecture.md §12) on a port of its
    # own: unset, not served. It needs Redis (REDIS_URL) for each key's rate limit: at most
    # `brand_api_rate_limit` requests per key in each window of `brand_api_rate_window_seconds`.
    brand_api_port: int | None = Field(None, ge=0, le=65535)
    brand_api_host: str = "127.0.0.1"
    brand_api_rate_limit: int = Field(60, ge=1, le=1_000_000)
    brand_api_rate_window_seconds: int = Field(60, ge=1, le=86_400)

    # Creators' payout e-mails (docs/architecture.md §11): one per status change, with a fresh
    # link to the page (starting with `page_base_url()`). Off while `smtp_host` is unset.
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # STARTTLS required (the submission port's usual); off only for a relay on this host.
    smtp_starttls: bool = True
    smtp_from: str | None = None  # e.g. "CreatorFlow <payouts@example.com>"
    # One SMTP transaction (connect, STARTTLS, login, send) ends within this; an e-mail's
    # lease is three times it, after which a `sending` e-mail is taken as `unknown`.
    smtp_timeout_seconds: float = Field(30.0, gt=0, le=600)
    # SMTP transactions an e-mail the server refused for now (4xx, no connection) gets.
    email_max_attempts: int = Field(5, ge=1, le=100)
    email_idle_seconds: float = Field(1.0, gt=0)
    # A status change older than this when the sender gets to it (e-mails off, or the server
    # unreachable that long) is not told by e-mail: it would be old news with a dead link.
    email_max_age_hours: float = Field(24.0, gt=0)

    def emails_on(self) -> bool:
        return bool(self.smtp_host)

    def page_base_url(self) -> str:
        """Where creators reach the page (no trailing slash)."""
        if self.page_url:
            return self.page_url.rstrip("/")
        return f"http://{self.page_host}:{self.page_port or DEFAULT_PAGE_PORT}"

    @field_validator("destination_key_previous", mode="before")
    @classmethod
    def _no_previous_key(cls, value: object) -> object:
        # Compose passes the variable through empty when no rotation is under way.
        if value == DEVELOPMENT_KEY_NAME:
            return DEVELOPMENT_KEY
        return None if value == "" else value

    @model_validator(mode="after")
    def _keys_are_usable(self) -> PayoutsSettings:
        try:
            decode_key(self.destination_key.get_secret_value())
        except DestinationKeyError as error:
            raise ValueError(f"{error}: generate one with `creatorflow payouts new-key`") from None
        if self.destination_key_previous is not None:
            try:
                decode_key(self.destination_key_previous.get_secret_value())
            except DestinationKeyError as error:
                raise ValueError(str(error).replace("KEY", "KEY_PREVIOUS", 1)) from None
        if (
            self.profile is Profile.PRODUCTION
            and self.destination_key.get_secret_value() == DEVELOPMENT_KEY
        ):
            raise ValueError(
                "CREATORFLOW_PROFILE=production refuses the development PAYOUTS_DESTINATION_KEY: "
                "generate one with `creatorflow payouts new-key`"
            )
        if self.provider == "stripe" and self.stripe_api_key is None:
            raise ValueError("PAYOUTS_PROVIDER=stripe needs PAYOUTS_STRIPE_API_KEY")
        if (self.paypal_client_id is None) != (self.paypal_client_secret is None):
            raise ValueError(
                "PayPal needs both PAYOUTS_PAYPAL_CLIENT_ID and PAYOUTS_PAYPAL_CLIENT_SECRET"
            )
        if (self.wise_api_token is None) != (self.wise_profile_id is None):
            raise ValueError("Wise needs both PAYOUTS_WISE_API_TOKEN and PAYOUTS_WISE_PROFILE_ID")
        if self.provider == "rails" and not self.configured_rails():
            raise ValueError(
                "PAYOUTS_PROVIDER=rails needs at least one rail: PAYOUTS_STRIPE_API_KEY, "
                "PAYOUTS_PAYPAL_CLIENT_ID and _SECRET, or PAYOUTS_WISE_API_TOKEN and _PROFILE_ID"
            )
        if self.profile is Profile.PRODUCTION and self.provider == "sandbox":
            raise ValueError(
                "CREATORFLOW_PROFILE=production refuses PAYOUTS_PROVIDER=sandbox: it reports "
                "payouts as sent and moves no money"
            )
        bases = {
            "stripe": self.stripe_api_base,
            "paypal": self.paypal_api_base,
            "wise": self.wise_api_base,
        }
        for rail, base in bases.items():
            if self.profile is Profile.PRODUCTION and not _private_channel(base):
                raise ValueError(
                    f"CREATORFLOW_PROFILE=production refuses a PAYOUTS_{rail.upper()}_API_BASE "
                    "that is not https:// (the credentials would cross the network in clear "
                    "text)"
                )
        if self.webhook_nonce_ttl_seconds < 2 * self.webhook_tolerance_seconds:
            raise ValueError(
                "PAYOUTS_WEBHOOK_NONCE_TTL_SECONDS must be at least twice "
                "PAYOUTS_WEBHOOK_TOLERANCE_SECONDS: a delivery is valid that long"
            )
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("PAYOUTS_RETRY_MAX_SECONDS must be >= PAYOUTS_RETRY_INITIAL_SECONDS")
        return self

    @model_validator(mode="after")
    def _lease_covers_a_lookup_and_a_send(self) -> PayoutsSettings:
        if self.dispatch_lease_seconds <= 2 * self.provider_timeout_seconds + 1:
            raise ValueError(
                "PAYOUTS_DISPATCH_LEASE_SECONDS must exceed twice PAYOUTS_PROVIDER_TIMEOUT_SECONDS "
                "plus a second: an attempt may look a payout up and then send it, each waiting "
                "that long, and its answer must be recorded before another dispatcher may take "
                "the payout over"
            )
        return self

    def webhook_secrets(self) -> dict[str, SecretStr]:
        """The rails whose webhooks are taken, with their secrets."""
        secrets = {
            "stripe": self.stripe_webhook_secret,
            "paypal": self.paypal_webhook_secret,
            "wise": self.wise_webhook_secret,
        }
        return {rail: s for rail, s in secrets.items() if s is not None and s.get_secret_value()}

    @model_validator(mode="after")
    def _page_behind_https(self) -> PayoutsSettings:
        if (
            self.profile is Profile.PRODUCTION
            and self.page_port is not None
            and not (self.page_url or "").startswith("https://")
        ):
            raise ValueError(
                "CREATORFLOW_PROFILE=production serves the creator page (PAYOUTS_PAGE_PORT) only "
                "behind https: set PAYOUTS_PAGE_URL to its https:// address (links and session "
                "cookies must not cross the network in clear text)"
            )
        return self

    @model_validator(mode="after")
    def _emails_are_safe(self) -> PayoutsSettings:
        if not self.emails_on():
            return self
        if not self.smtp_from or "@" not in self.smtp_from:
            raise ValueError("PAYOUTS_SMTP_HOST needs PAYOUTS_SMTP_FROM, the sender's address")
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("SMTP login needs both PAYOUTS_SMTP_USERNAME and _PASSWORD")
        if self.profile is not Profile.PRODUCTION:
            return self
        if not self.smtp_starttls and self.smtp_host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(
                "CREATORFLOW_PROFILE=production refuses PAYOUTS_SMTP_STARTTLS=false to another "
                "host: the e-mails carry links to creators' payouts"
            )
        if not (self.page_url or "").startswith("https://"):
            raise ValueError(
                "CREATORFLOW_PROFILE=production sends payout e-mails (PAYOUTS_SMTP_HOST) only "
                "with an https:// PAYOUTS_PAGE_URL: their links open the creator's page"
            )
        return self

    def configured_rails(self) -> list[str]:
        """The rails whose credentials are set."""
        rails = []
        if self.stripe_api_key is not None:
            rails.append("stripe")
        if self.paypal_client_id is not None and self.paypal_client_secret is not None:
            rails.append("paypal")
        if self.wise_api_token is not None and self.wise_profile_id is not None:
            rails.append("wise")
        return rails


def _private_channel(url: str) -> bool:
    """https, or plain http that never leaves the host (a local proxy or test server)."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")
    )
