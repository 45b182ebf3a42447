"""Settings: environment names, and refusal of unsafe production configurations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.payouts.settings import PayoutsSettings
from shared.runtime.config import Profile, Settings

EXTERNAL = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
    "DATABASE_URL": "postgresql://app:s3cret-Pa55@db:5432/app",
    "REDIS_URL": "redis://:c4che-Pa55@cache:6379/0",
}


def test_defaults_use_the_embedded_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in EXTERNAL:
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.profile is Profile.DEVELOPMENT
    assert settings.uses_embedded


def _external(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers named by the environment, as in a deployment."""
    for name, value in EXTERNAL.items():
        monkeypatch.setenv(name, value)


def _production(monkeypatch: pytest.MonkeyPatch) -> None:
    """External servers under the production profile."""
    _external(monkeypatch)
    monkeypatch.setenv("CREATORFLOW_PROFILE", "production")


def test_external_servers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _external(monkeypatch)
    settings = Settings()
    assert not settings.uses_embedded
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == EXTERNAL["DATABASE_URL"]
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)


def test_production_needs_kafka_and_a_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREATORFLOW_PROFILE", "production")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="set KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL"):
        Settings()


def test_production_does_not_need_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """No service uses Redis yet, so none is refused for the lack of one."""
    _production(monkeypatch)
    monkeypatch.delenv("REDIS_URL")
    assert Settings().redis_url is None


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://creatorflow:creatorflow@db:5432/creatorflow",
        "postgresql://creatorflow@db:5432/creatorflow",
    ],
)
def test_production_refuses_default_or_empty_password(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    _production(monkeypatch)
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ValidationError, match="password"):
        Settings()


def test_production_refuses_redis_without_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    _production(monkeypatch)
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    with pytest.raises(ValidationError, match="REDIS_URL without a password"):
        Settings()


PAYOUTS_PRODUCTION = {
    "CREATORFLOW_PROFILE": "production",
    "PAYOUTS_DESTINATION_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "PAYOUTS_PROVIDER": "stripe",
    "PAYOUTS_STRIPE_API_KEY": "sk_live_x",
}


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({"PAYOUTS_PROVIDER": "sandbox"}, "PAYOUTS_PROVIDER=sandbox"),
        ({"PAYOUTS_STRIPE_API_BASE": "http://stripe.internal"}, "not https"),
        (
            {
                "PAYOUTS_PAYPAL_CLIENT_ID": "id",
                "PAYOUTS_PAYPAL_CLIENT_SECRET": "s",
                "PAYOUTS_PAYPAL_API_BASE": "http://paypal.internal",
            },
            "PAYOUTS_PAYPAL_API_BASE that is not https",
        ),
        ({"PAYOUTS_WISE_API_BASE": "http://wise.internal"}, "PAYOUTS_WISE_API_BASE"),
        ({"PAYOUTS_PAYPAL_CLIENT_ID": "id"}, "both PAYOUTS_PAYPAL_CLIENT_ID"),
        ({"PAYOUTS_WISE_API_TOKEN": "t"}, "both PAYOUTS_WISE_API_TOKEN"),
    ],
)
def test_production_refuses_payouts_that_move_no_money_or_leak_the_key(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str], refusal: str
) -> None:
    for name, value in {**PAYOUTS_PRODUCTION, **changes}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=refusal):
        PayoutsSettings()


@pytest.mark.parametrize("base", ["https://api.stripe.com", "http://127.0.0.1:8443"])
def test_production_accepts_stripe_over_tls_or_on_this_host(
    monkeypatch: pytest.MonkeyPatch, base: str
) -> None:
    for name, value in {**PAYOUTS_PRODUCTION, "PAYOUTS_STRIPE_API_BASE": base}.items():
        monkeypatch.setenv(name, value)
    assert PayoutsSettings().stripe_api_base == base


def test_rails_are_configured_by_their_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**PAYOUTS_PRODUCTION, "PAYOUTS_PROVIDER": "rails"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PAYOUTS_STRIPE_API_KEY")
    with pytest.raises(ValidationError, match="PAYOUTS_PROVIDER=rails needs at least one rail"):
        PayoutsSettings()
    monkeypatch.setenv("PAYOUTS_WISE_API_TOKEN", "t")
    monkeypatch.setenv("PAYOUTS_WISE_PROFILE_ID", "4242")
    assert PayoutsSettings().configured_rails() == ["wise"]
    monkeypatch.setenv("PAYOUTS_PAYPAL_CLIENT_ID", "id")
    monkeypatch.setenv("PAYOUTS_PAYPAL_CLIENT_SECRET", "s")
    monkeypatch.setenv("PAYOUTS_STRIPE_API_KEY", "sk_live_x")
    assert PayoutsSettings().configured_rails() == ["stripe", "paypal", "wise"]


def test_production_with_real_credentials_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    _production(monkeypatch)
    assert Settings().profile is Profile.PRODUCTION


def test_validation_errors_quote_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused configuration is reported in logs and tracebacks: no password in it."""
    monkeypatch.setenv("CREATORFLOW_PROFILE", "production")
    # Short values: pydantic shortens a long input in the message, which could hide a leak.
    monkeypatch.setenv("DATABASE_URL", "postgres://a:s3cret@db")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(ValidationError, match="KAFKA_BOOTSTRAP_SERVERS") as raised:
        Settings()
    assert "s3cret" not in str(raised.value) and "s3cret" not in repr(raised.value)


def test_payouts_validation_errors_quote_no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYOUTS_STRIPE_API_KEY", "sk_9d1e")
    monkeypatch.setenv("PAYOUTS_RETRY_MAX_SECONDS", "0.5")
    with pytest.raises(ValidationError, match="RETRY_MAX") as raised:
        PayoutsSettings()
    assert "sk_9d" not in str(raised.value)  # pydantic shows the head of a long input


@pytest.mark.parametrize("setting", ["PAYOUTS_FETCH_MAX_WAIT_MS", "PAYOUTS_BATCH_TIMEOUT_MS"])
def test_payouts_consumer_waits_of_zero_are_refused(
    monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    """0 would have the consumer ask the broker in a tight loop instead of consuming."""
    monkeypatch.setenv(setting, "0")
    with pytest.raises(ValidationError, match=setting.removeprefix("PAYOUTS_").lower()):
        PayoutsSettings()


def test_a_group_instance_id_names_the_host_it_runs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "3f2a9c1d77e0.local")
    monkeypatch.setenv("KAFKA_GROUP_INSTANCE_ID", "payouts-{hostname}")
    assert Settings().group_instance_id == "payouts-3f2a9c1d77e0.local"
    monkeypatch.setenv("KAFKA_GROUP_INSTANCE_ID", "")
    assert Settings().group_instance_id is None, "empty turns static membership off"


@pytest.mark.parametrize("value", ["payouts 1", "payouts/1", "x" * 250])
def test_a_group_instance_id_kafka_would_refuse_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("KAFKA_GROUP_INSTANCE_ID", value)
    with pytest.raises(ValidationError, match="KAFKA_GROUP_INSTANCE_ID takes letters"):
        Settings()


@pytest.mark.parametrize("command", ["up", "infra up"])
def test_a_refused_option_is_one_line_naming_its_variable(command: str) -> None:
    from typer.testing import CliRunner

    from shared.tools.cli.main import app

    done = CliRunner().invoke(app, [*command.split(), "--kafka", "apache", "--brokers", "2"])
    assert done.exit_code == 1
    assert "CREATORFLOW_KAFKA_BROKERS must be 1 or 3, not 2" in done.output
    assert "errors.pydantic.dev" not in done.output and "Traceback" not in done.output


def test_a_command_with_no_broker_to_reach_says_where_to_look(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from shared.tools.cli.main import app

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing listens there
    done = CliRunner().invoke(app, ["dlq", "list", "campaign.deals"])
    assert done.exit_code == 1
    assert "cannot connect to Kafka at 127.0.0.1:1" in done.output
    assert "hint: is KAFKA_BOOTSTRAP_SERVERS right?" in done.output
    assert "Traceback" not in done.output
