"""`creatorflow keys` and `creatorflow verify` against the real broker, as an operator and a
brand use them: make, list, rotate and revoke keys; sign with --sign-with; check an event."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from shared.contract.events import Topic, encode
from shared.contract.events.examples import valid_example
from shared.contract.signing import private_key_from_text, public_key_text, sign_json
from shared.tools.cli.main import app
from shared.tools.infra import InfraUrls
from tests.support.kafka_io import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def cli_env(infra: InfraUrls, topics: None) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers, "COLUMNS": "200"}


def _key_id(output: str) -> str:
    found = re.search(r"ed25519:[0-9a-f]{32}", output)
    assert found, output
    return found.group(0)


def _new_brand_key(owner: str, out: Path, env: dict[str, str]) -> Result:
    """`creatorflow keys new --party brand --owner OWNER --out OUT`."""
    command = ["keys", "new", "--party", "brand", "--owner", owner, "--out", str(out)]
    return CliRunner().invoke(app, command, env=env)


def _deal(brand: str) -> bytes:
    event = valid_example("deal.signed")
    data = event.data.model_copy(update={"brand_id": brand, "deal_id": f"d-{uuid.uuid4().hex}"})
    return encode(event.model_copy(update={"data": data, "subject": data.deal_id}))


def test_an_operator_manages_keys_and_a_brand_signs_and_checks(
    cli_env: dict[str, str], infra: InfraUrls, tmp_path: Path
) -> None:
    runner = CliRunner()
    brand = f"br-{uuid.uuid4().hex[:8]}"
    key_file = tmp_path / "brand.key"

    made = runner.invoke(
        app,
        ["keys", "new", "--party", "brand", "--owner", brand, "--out", str(key_file)],
        env=cli_env,
    )
    assert made.exit_code == 0, made.output
    first = _key_id(made.output)
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = runner.invoke(
        app,
        ["keys", "new", "--party", "brand", "--owner", brand, "--out", str(key_file)],
        env=cli_env,
    )
    assert again.exit_code == 1 and "refusing to overwrite" in again.output

    # A brand signs as it sends; what lands on the topic verifies, and tampered bytes do not.
    deal = tmp_path / "deal.jsonl"
    deal.write_bytes(_deal(brand) + b"\n")
    sent = runner.invoke(
        app,
        ["produce", Topic.CAMPAIGN_DEALS, str(deal), "--sign-with", str(key_file)],
        env=cli_env,
    )
    assert sent.exit_code == 0, sent.output
    signed = next(
        e
        for e in asyncio.run(read_topic(infra.kafka_bootstrap_servers, Topic.CAMPAIGN_DEALS))
        if e.data.brand_id == brand
    )
    assert signed.sigkeyid == first
    raw = sign_json(deal.read_bytes(), private_key_from_text(key_file.read_text()))
    good = runner.invoke(app, ["verify"], input=raw, env=cli_env)
    assert good.exit_code == 0 and f"signed by brand {brand}" in good.output, good.output
    tampered = raw.replace(b'"0.10"', b'"0.90"', 1)
    assert tampered != raw
    bad = runner.invoke(app, ["verify"], input=tampered, env=cli_env)
    assert bad.exit_code == 1 and "bad_signature" in bad.output

    # Rotation: a new key in force, the old one revoked; its signatures are refused from now.
    rotated = runner.invoke(
        app, ["keys", "rotate", first, "--out", str(tmp_path / "brand-2.key")], env=cli_env
    )
    assert rotated.exit_code == 0, rotated.output
    second = _key_id(rotated.output.replace(first, ""))
    listed = runner.invoke(app, ["keys", "list"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    states = {
        line.split()[0]: line.split()[3] for line in listed.output.splitlines() if brand in line
    }
    assert states == {first: "revoked", second: "in"}
    old = runner.invoke(app, ["verify"], input=raw, env=cli_env)
    assert old.exit_code == 1 and "revoked_key" in old.output

    def produce_signed(name: str, *lines: bytes) -> Any:
        file = tmp_path / name
        file.write_bytes(b"".join(line + b"\n" for line in lines))
        argv = ["produce", Topic.CAMPAIGN_DEALS, str(file), "--sign-with", str(key_file)]
        return runner.invoke(app, argv, env=cli_env)

    # produce refuses to sign with it what every service would refuse: nothing is sent.
    refused = produce_signed("late.jsonl", _deal(brand), _deal(f"{brand}-other"))
    assert refused.exit_code == 1, refused.output
    assert "late.jsonl:1" in refused.output and "revoked_key" in refused.output
    assert "late.jsonl:2" in refused.output and "revoked_key" in refused.output
    # One run names every problem: a line the schema refuses and one the signature would.
    named = produce_signed("both.jsonl", b'{"not": "an event"}', _deal(brand))
    assert named.exit_code == 1, named.output
    assert "both.jsonl:1" in named.output and "both.jsonl:2" in named.output
    assert "revoked_key" in named.output and "2 invalid line(s); nothing sent" in named.output
    # Another brand's deal signed with the new key: not the owner.
    other = tmp_path / "other.jsonl"
    other.write_bytes(_deal(f"{brand}-other") + b"\n" + _deal(brand) + b"\n")
    partly = runner.invoke(
        app,
        ["produce", Topic.CAMPAIGN_DEALS, str(other), "--sign-with", str(tmp_path / "brand-2.key"),
         "--skip-invalid"],
        env=cli_env,
    )  # fmt: skip
    assert partly.exit_code == 0, partly.output
    assert "other.jsonl:1" in partly.output and "not_the_owner" in partly.output
    assert "Sent 1 event(s)" in partly.output and "skipped 1" in partly.output
    unknown = runner.invoke(app, ["keys", "revoke", "ed25519:" + "0" * 32], env=cli_env)
    assert unknown.exit_code == 1 and "no registered key" in unknown.output
    not_json = runner.invoke(app, ["verify"], input=b"{}", env=cli_env)
    assert not_json.exit_code == 1 and "not a v1 event" in not_json.output
    assert json.loads(raw)["sigkeyid"] == first


def test_a_key_file_is_kept_once_its_key_is_registered_and_shows_its_public_key(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    runner = CliRunner()
    key_file = tmp_path / "brand.key"
    no_kafka = {**cli_env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    failed = _new_brand_key("br-x", key_file, no_kafka)
    assert failed.exit_code == 1, failed.output
    assert not key_file.exists(), "a key that was never registered must not be kept"
    made = _new_brand_key("br-x", key_file, cli_env)
    assert made.exit_code == 0, made.output
    shown = runner.invoke(app, ["keys", "public", str(key_file)], env=cli_env)
    assert shown.exit_code == 0, shown.output
    public = shown.output.strip()
    assert public == public_key_text(private_key_from_text(key_file.read_text()).public_key())
    listed = runner.invoke(app, ["keys", "list"], env=cli_env)
    assert f"public key {public}" in listed.output


def test_a_key_file_that_cannot_be_written_registers_and_revokes_nothing(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # Written after registering, an --out in a missing folder left a key in force whose
    # private key nobody held (and `rotate` revoked the old key too).
    runner = CliRunner()
    owner = f"br-{uuid.uuid4().hex[:8]}"
    nowhere = tmp_path / "missing" / "brand.key"
    failed = _new_brand_key(owner, nowhere, cli_env)
    assert failed.exit_code == 1 and f"cannot create {nowhere}" in failed.output, failed.output
    assert failed.exception is None or isinstance(failed.exception, SystemExit)
    key_file = tmp_path / "brand.key"
    made = _new_brand_key(owner, key_file, cli_env)
    assert made.exit_code == 0, made.output
    rotated = runner.invoke(
        app, ["keys", "rotate", _key_id(made.output), "--out", str(nowhere)], env=cli_env
    )
    assert rotated.exit_code == 1 and f"cannot create {nowhere}" in rotated.output
    listed = runner.invoke(app, ["keys", "list"], env=cli_env)
    mine = [line for line in listed.output.splitlines() if owner in line]
    assert len(mine) == 1 and "in force" in mine[0], listed.output


def test_a_registration_that_may_have_reached_the_broker_keeps_its_key_file(
    cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A send that timed out may have been stored: the private key stays, and the error says
    # so. One the cluster refused was never written: its file goes.
    from aiokafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError

    from shared.tools.cli import keys

    runner = CliRunner()
    command = ["keys", "new", "--party", "brand", "--owner", f"br-{uuid.uuid4().hex[:8]}"]
    for error, kept in ((KafkaTimeoutError(), True), (TopicAuthorizationFailedError(), False)):

        async def failing(*_: Any, error: Exception = error) -> None:
            raise error

        monkeypatch.setattr(keys, "_publish", failing)
        key_file = tmp_path / f"{type(error).__name__}.key"
        done = runner.invoke(app, [*command, "--out", str(key_file)], env=cli_env)
        assert done.exit_code != 0
        assert key_file.exists() is kept, done.output
        if kept:
            assert "may not have finished" in done.output
            private_key_from_text(key_file.read_text())  # the whole key, readable
            assert key_file.stat().st_mode & 0o777 == 0o600


def test_a_registered_key_is_not_registered_again_for_another_owner_nor_a_revoked_one(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    runner = CliRunner()
    brand, rival = f"br-{uuid.uuid4().hex[:8]}", f"br-{uuid.uuid4().hex[:8]}"
    key_file = tmp_path / "brand.key"
    made = _new_brand_key(brand, key_file, cli_env)
    assert made.exit_code == 0, made.output
    public = public_key_text(private_key_from_text(key_file.read_text()).public_key())

    def add(owner: str) -> tuple[int, str]:
        added = runner.invoke(
            app, ["keys", "add", "--party", "brand", "--owner", owner, "--public-key", public],
            env=cli_env,
        )  # fmt: skip
        return added.exit_code, added.output

    assert add(brand)[0] == 0  # the same owner again: as before (a broker started empty)
    code, output = add(rival)
    assert code == 1 and f"is registered for brand {brand}" in output, output
    revoked = runner.invoke(app, ["keys", "revoke", _key_id(made.output)], env=cli_env)
    assert revoked.exit_code == 0, revoked.output
    code, output = add(brand)
    assert code == 1 and "a revoked key stays revoked" in output, output
    listed = runner.invoke(app, ["keys", "list"], env=cli_env)
    assert rival not in listed.output


def test_a_shop_key_is_bound_to_the_brands_it_sells_for(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    runner = CliRunner()

    def keys(*args: str) -> Any:
        return runner.invoke(app, ["keys", *args], env=cli_env)

    shop, brand = f"shop-{uuid.uuid4().hex[:8]}", f"br-{uuid.uuid4().hex[:8]}"
    shop_key = tmp_path / "shop.key"
    made = keys("new", "--party", "shop", "--owner", shop, "--brand", brand, "--out", str(shop_key))
    assert made.exit_code == 0, made.output
    assert f"for shop {shop}, selling for {brand}" in made.output
    assert "warning" not in made.output
    key = _key_id(made.output)
    listed = keys("list")
    assert f"{key}  shop {shop}  in force\n  public key " in listed.output
    assert f"sells for {brand}\n" in listed.output

    # A second brand: the same key and owner registered again with both.
    public = keys("public", str(shop_key)).output.strip()
    other = f"br-{uuid.uuid4().hex[:8]}"
    added = keys("add", "--party", "shop", "--owner", shop, "--public-key", public,
                 "--brand", brand, "--brand", other)  # fmt: skip
    assert added.exit_code == 0, added.output
    both = ", ".join(sorted([brand, other]))
    assert f"sells for {both}\n" in keys("list").output
    # Again without --brand: a forgotten flag keeps the brands rather than widen the key.
    kept = keys("add", "--party", "shop", "--owner", shop, "--public-key", public)
    assert kept.exit_code == 0, kept.output
    assert f"keeps its brands: {both}" in kept.output and "warning" not in kept.output
    assert f"sells for {both}\n" in keys("list").output

    # Unbound: registered, with a warning; --brand on a brand's key: refused.
    loose = keys("new", "--party", "shop", "--owner", f"{shop}-2", "--out", str(tmp_path / "l.key"))
    assert loose.exit_code == 0, loose.output
    assert "warning: this shop key is bound to no brand" in loose.output
    brand_key = tmp_path / "brand.key"
    refused = keys("new", "--party", "brand", "--owner", brand, "--brand", brand,
                   "--out", str(brand_key))  # fmt: skip
    assert refused.exit_code == 1
    assert "--brand binds a shop key to its brands; a brand key names none" in refused.output
    assert not brand_key.exists()
