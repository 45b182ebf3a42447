"""No secret leaves where it belongs: not in logs, events, dead letters, error text or the
database.

The three services run as processes, in the production profile, on fresh embedded servers
reached with credentials made for this test (a PostgreSQL role with its own password, a Redis
password), the Stripe provider against a local fake Stripe with its own API key, and their own
destination key. A small campaign runs through them with payout destinations that are easy
to find, and so do the error paths: a provider outage, a destination the provider refuses,
account events dead-lettered as invalid (a bad currency, an over-long destination) or refused
(a raw account number), operator commands reading the results, the creators' payout pages
and statements (opened with magic links, whose tokens and sessions are searched for too: the
tables keep only their hashes), the brand API's answers (to a key that is searched for the
same way), the e-mails payouts sends creators (to a local SMTP server),
and service starts refused for a wrong or malformed key. Then every secret is searched for in
everything captured: the private signing keys of the services and of every party in each
spelling they could leak in (raw, hex, base64, PKCS#8 DER and PEM), and any PEM private key
block at all.

The input topic `creator.payout-accounts` carries the destinations by contract and is the
one place not searched. Creators' e-mail addresses are personal data: searched everywhere
but the payout accounts' table, which keeps them to send to, and the e-mails sent to them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from services.payouts.creator_page.web import SESSION_COOKIE
from services.payouts.destinations import decode_key, new_key
from shared.contract.events import TOPICS, Topic, dlq_topic, encode, event_key, spec_for_type
from shared.contract.signing import private_key_from_text, private_key_text, signature_valid
from shared.runtime.kafka import partitions_of
from shared.tools.infra import InfraUrls
from shared.tools.infra.process import free_port
from shared.tools.infra.service_processes import SERVICES, ServiceProcesses
from shared.tools.signing import PartyKeys
from tests.conftest import embedded_servers
from tests.integration.payouts.stripe_server import FakeStripe
from tests.support.pdf import pdf_text
from tests.support.processes import python_process
from tests.support.smtp_sink import SmtpSink, smtp_sink
from tests.unit.payouts.builders import account, confirmed, funded_deal, fx

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WAIT_SECONDS: Final = 60.0
TAIL_OPTIONS: Final = ("--from-beginning", "--limit", "3", "--no-follow")
SEARCHED_TOPICS: Final = [
    *(t for t in TOPICS if t != Topic.CREATOR_PAYOUT_ACCOUNTS),
    *(dlq_topic(t) for t in TOPICS),
]


def _distinct(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Secrets:
    database_password: str = field(default_factory=lambda: _distinct("pg-pw-"))
    redis_password: str = field(default_factory=lambda: _distinct("redis-pw-"))
    stripe_api_key: str = field(default_factory=lambda: _distinct("sk_test_"))
    stripe_webhook_secret: str = field(default_factory=lambda: _distinct("whsec_"))
    destination_key: str = field(default_factory=new_key)
    paid_destination: str = field(default_factory=lambda: _distinct("acct_paid_"))
    refused_destination: str = field(default_factory=lambda: _distinct("acct_unknown_"))
    invalid_event_destination: str = field(default_factory=lambda: _distinct("acct_invalid_"))
    overlong_destination: str = field(default_factory=lambda: _distinct("acct_overlong_"))
    # Personal data: creators' e-mail addresses, valid and (two addresses in one) not.
    paid_email: str = field(default_factory=lambda: _distinct("paid-") + "@creators.test")
    refused_email: str = field(default_factory=lambda: _distinct("unpaid-") + "@creators.test")
    invalid_event_email: str = field(default_factory=lambda: _distinct("inv-") + "@creators.test")
    malformed_email: str = field(
        default_factory=lambda: _distinct("two-") + "@creators.test, b@creators.test"
    )
    # Digits: the payouts service refuses it as a raw account number (not a provider token).
    raw_account_number: str = field(default_factory=lambda: str(uuid.uuid4().int)[:18])
    # The services' own signing key: what they publish is signed with it.
    service_signing_key: str = field(
        default_factory=lambda: private_key_text(Ed25519PrivateKey.generate())
    )

    def personal(self) -> dict[str, str]:
        return {name: value for name, value in vars(self).items() if name.endswith("_email")}

    def named(self) -> dict[str, str]:
        found = {k: v for k, v in vars(self).items() if k not in self.personal()}
        # The key as bytes, in the two other spellings a careless log line would use.
        key = decode_key(self.destination_key)
        found["destination_key (hex)"] = key.hex()
        found["destination_key (urlsafe)"] = base64.urlsafe_b64encode(key).decode()
        found |= private_key_spellings("service_signing_key", self.service_signing_key)
        return found


# Whatever private key it was, a PEM block of one gives it away.
PEM_MARKERS: Final = {"a PEM private key": "PRIVATE KEY-----"}


def private_key_spellings(name: str, text: str) -> dict[str, str]:
    """An Ed25519 private key as `keys new` writes it (raw, base64url) and in the spellings
    it could leak in: raw bytes in hex and standard base64, and the PKCS#8 DER in base64,
    which is the body of its PEM block (one line for an Ed25519 key)."""
    key = private_key_from_text(text)
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    assert pem.splitlines()[1] == base64.b64encode(der).decode()
    return {
        name: text,
        f"{name} (hex)": raw.hex(),
        f"{name} (base64)": base64.b64encode(raw).decode().rstrip("="),
        f"{name} (PEM body)": base64.b64encode(der).decode(),
    }


@dataclass
class Captured:
    """Everything the search covers, each piece labelled with where it came from."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: str | bytes | None) -> None:
        if text:
            body = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
            self.texts.append((where, body))

    def leaks(self, secrets: dict[str, str]) -> list[str]:
        found = []
        for name, secret in secrets.items():
            for where, text in self.texts:
                at = text.find(secret)
                if at >= 0:
                    found.append(f"{name} in {where}: ...{text[max(0, at - 80) : at + 40]!r}")
        return found


@pytest.fixture(scope="module")
def servers() -> Iterator[InfraUrls]:
    yield from embedded_servers()


@pytest.fixture(scope="module")
def secrets() -> Secrets:
    return Secrets()


@pytest.fixture(scope="module")
async def credentials(servers: InfraUrls, secrets: Secrets) -> AsyncIterator[InfraUrls]:
    """Server URLs with this test's own database role and Redis password."""
    role = f"leak_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(servers.database_url)
    try:
        # Identifiers and the password are made here, not input: quoting is enough.
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{secrets.database_password}'")
        await admin.execute(f"CREATE DATABASE {role} OWNER {role}")
    finally:
        await admin.close()
    parts = urlsplit(servers.database_url)
    database = urlunsplit(
        parts._replace(
            netloc=f"{role}:{secrets.database_password}@{parts.hostname}:{parts.port}",
            path=f"/{role}",
        )
    )
    cache = redis.Redis.from_url(servers.redis_url)
    await cache.config_set("requirepass", secrets.redis_password)
    await cache.aclose()
    redis_parts = urlsplit(servers.redis_url)
    cache_url = urlunsplit(
        redis_parts._replace(
            netloc=f":{secrets.redis_password}@{redis_parts.hostname}:{redis_parts.port}"
        )
    )
    yield InfraUrls(servers.kafka_bootstrap_servers, database, cache_url)


@pytest.fixture(scope="module")
async def stripe(secrets: Secrets) -> AsyncIterator[FakeStripe]:
    fake = FakeStripe(api_key=secrets.stripe_api_key, accounts={secrets.paid_destination})
    async with fake:
        yield fake


@pytest.fixture(scope="module")
async def mailbox() -> AsyncIterator[SmtpSink]:
    async with smtp_sink() as sink:
        yield sink


def service_env(
    urls: InfraUrls, secrets: Secrets, stripe: FakeStripe, mailbox: SmtpSink
) -> dict[str, str]:
    return {
        **urls.as_env(),
        "CREATORFLOW_PROFILE": "production",
        "PAYOUTS_PROVIDER": "stripe",
        "PAYOUTS_STRIPE_API_KEY": secrets.stripe_api_key,
        "PAYOUTS_STRIPE_WEBHOOK_SECRET": secrets.stripe_webhook_secret,
        "PAYOUTS_STRIPE_API_BASE": stripe.base_url,
        "PAYOUTS_DESTINATION_KEY": secrets.destination_key,
        "PAYOUTS_RETRY_INITIAL_SECONDS": "0.2",
        "PAYOUTS_RETRY_MAX_SECONDS": "0.5",
        "PAYOUTS_DISPATCH_IDLE_SECONDS": "0.2",
        "PAYOUTS_SETTLE_CHECK_SECONDS": "0.2",
        "CREATORFLOW_SIGNING_KEY": secrets.service_signing_key,
        "PAYOUTS_PAGE_PORT": str(free_port()),
        "PAYOUTS_BRAND_API_PORT": str(free_port()),
        # Production serves the page behind https only: this test's requests skip the proxy.
        "PAYOUTS_PAGE_URL": PAGE_URL,
        # Creators' payout e-mails, to a server on this host (production allows no STARTTLS
        # only there).
        "PAYOUTS_SMTP_HOST": mailbox.host,
        "PAYOUTS_SMTP_PORT": str(mailbox.port),
        "PAYOUTS_SMTP_STARTTLS": "false",
        "PAYOUTS_SMTP_FROM": "CreatorFlow <payouts@creatorflow.test>",
        "PAYOUTS_EMAIL_IDLE_SECONDS": "0.2",
    }


PAGE_URL: Final = "https://pay.creatorflow.test"


async def read_creator_pages(env: dict[str, str], creators: list[str]) -> dict[str, str]:
    """Each creator's payout page as a creator gets it: a link printed by `creatorflow
    creators link`, opened, redeemed; then the page, the part it polls and each payout's own.
    Returns every response body by where it came from, and each link and session token
    (which must appear in no page and no table) under "token ..."."""
    found: dict[str, str] = {}
    base = f"http://127.0.0.1:{env['PAYOUTS_PAGE_PORT']}"
    async with httpx.AsyncClient(base_url=base, timeout=WAIT_SECONDS) as http:
        for creator in creators:
            code, output = await _run(["-m", "shared.tools.cli", "creators", "link", creator], env)
            assert code == 0, output
            link = output.split(PAGE_URL, 1)[1].split()[0]
            found[f"token of {creator}'s link"] = link.rsplit("/", 1)[1]
            found[f"page {link} (GET)"] = (await http.get(link)).text
            redeemed = await http.post(link)
            assert redeemed.status_code == 303, redeemed.text
            session = redeemed.cookies[SESSION_COOKIE]
            found[f"token of {creator}'s session"] = session
            cookie = {"cookie": f"{SESSION_COOKIE}={session}"}
            page = await http.get("/c/payouts", headers=cookie)
            assert page.status_code == 200 and creator in page.text
            found[f"{creator}'s page"] = page.text
            polled = await http.get("/c/payouts/list", headers=cookie)
            found[f"{creator}'s page, polled"] = polled.text
            for payout in re.findall(r'href="(/c/payouts/po_[0-9a-f]+)"', page.text):
                found[f"{creator}'s {payout}"] = (await http.get(payout, headers=cookie)).text
            found.update(await _read_statements(http, creator, cookie))
    return found


async def read_brand_api(env: dict[str, str], brand: str, creators: list[str]) -> dict[str, str]:
    """What the brand's API answers a key printed by `creatorflow brands api-key add`: its
    campaigns, each campaign and each creator. Returns every body by where it came from, and
    the key (which must appear in no answer and no table) under "token ..."."""
    code, output = await _run(
        ["-m", "shared.tools.cli", "brands", "api-key", "add", "--brand", brand], env
    )
    assert code == 0, output
    key = re.search(r"cfk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", output)
    assert key is not None, output
    found = {f"token of {brand}'s API key": key.group(0)}
    base = f"http://127.0.0.1:{env['PAYOUTS_BRAND_API_PORT']}"
    headers = {"authorization": f"Bearer {key.group(0)}"}
    async with httpx.AsyncClient(base_url=base, timeout=WAIT_SECONDS, headers=headers) as http:
        listed = await http.get("/brand/v1/campaigns")
        assert listed.status_code == 200, listed.text
        found[f"{brand}'s API campaigns"] = listed.text
        paths = [f"/brand/v1/campaigns/{c['campaign_id']}" for c in listed.json()["campaigns"]]
        paths += [f"/brand/v1/creators/{creator}" for creator in creators]
        for path in paths:
            got = await http.get(path)
            assert got.status_code == 200, (path, got.text)
            found[f"{brand}'s API {path}"] = got.text
    return found


async def _read_statements(
    http: httpx.AsyncClient, creator: str, cookie: dict[str, str]
) -> dict[str, str]:
    """The creator's statements page and every file it links to (a PDF as its raw bytes and
    the text its streams show)."""
    listed = await http.get("/c/statements", headers=cookie)
    assert listed.status_code == 200, listed.text
    found = {f"{creator}'s statements": listed.text}
    files = re.findall(r'href="(/c/statements/[0-9-]+\.(?:csv|pdf))"', listed.text)
    assert files, listed.text
    for path in files:
        got = await http.get(path, headers=cookie)
        assert got.status_code == 200, path
        text = got.text if path.endswith(".csv") else got.content.decode("latin-1")
        if path.endswith(".pdf"):
            text += "\n" + pdf_text(got.content)
        found[f"{creator}'s {path}"] = text
    return found


async def _read_topics(bootstrap: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now on the searched topics, from the beginning, without a group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, SEARCHED_TOPICS)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        while batch := await consumer.getmany(timeout_ms=2000):
            for part in batch.values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()


async def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    process = await python_process(
        *argv, env={**os.environ, **env, "COLUMNS": "200"}, stdin=asyncio.subprocess.DEVNULL
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), WAIT_SECONDS)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        pytest.fail(f"{argv} still running after {WAIT_SECONDS:.0f}s:\n{output.decode()[-3000:]}")
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8", "replace")


async def test_no_secret_leaves_where_it_belongs(
    credentials: InfraUrls, secrets: Secrets, stripe: FakeStripe, mailbox: SmtpSink
) -> None:
    captured = Captured()
    lines: list[str] = []
    env = service_env(credentials, secrets, stripe, mailbox)
    bootstrap = credentials.kafka_bootstrap_servers

    paid_creator, refused_creator = "cr-leak-paid", "cr-leak-refused"
    paid_deal, refused_deal = "deal-leak-paid", "deal-leak-refused"
    valid = [
        fx({"EUR": "0.9215"}),
        # The paid and the refused creator: the same US account, each with its own secrets.
        *(
            account(creator, currency="USD", form="W-9", destination=destination, email=email)
            for creator, destination, email in (
                (paid_creator, secrets.paid_destination, secrets.paid_email),
                (refused_creator, secrets.refused_destination, secrets.refused_email),
            )
        ),
        account("cr-leak-raw", currency="USD", destination=secrets.raw_account_number),
        *funded_deal(paid_deal, paid_creator, deliverables=(("dl-1", 1),)),
        *funded_deal(refused_deal, refused_creator, deliverables=(("dl-1", 1),)),
        confirmed(paid_deal, "dl-1"),
        confirmed(refused_deal, "dl-1"),
    ]
    # Invalid to the contract, with a destination inside: a bad currency, and a destination
    # longer than the contract allows (its refusal must not quote it), and an e-mail field
    # that is not one address (its refusal must not quote it either).
    invalid = [
        json.loads(encode(account(creator, destination=destination)))
        for creator, destination in (
            ("cr-leak-invalid", secrets.invalid_event_destination),
            ("cr-leak-long", "replaced below"),
            ("cr-leak-email", secrets.invalid_event_destination + "-e"),
        )
    ]
    invalid[0]["data"]["currency"] = "EURO"
    invalid[0]["data"]["email"] = secrets.invalid_event_email
    invalid[1]["data"]["destination"] = secrets.overlong_destination + "0" * 600
    invalid[2]["data"]["email"] = secrets.malformed_email

    # Production refuses unsigned money events: each is signed by its party, whose keys are
    # registered first. Their private keys are secrets too.
    keys = PartyKeys()
    valid = [keys.sign(event, owner="br-1") for event in valid]
    service_key = private_key_from_text(secrets.service_signing_key).public_key()
    private_keys: dict[str, str] = {}
    for n, text in enumerate(keys.private_texts()):
        private_keys |= private_key_spellings(f"private key {n}", text)

    stripe.fail_next(503)  # the first transfer meets an outage, then is retried
    async with ServiceProcesses(SERVICES, env, lambda name, line: lines.append(f"{name} | {line}")):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
        await producer.start()
        try:
            for document in invalid:
                await producer.send_and_wait(
                    Topic.CREATOR_PAYOUT_ACCOUNTS,
                    json.dumps(document).encode(),
                    key=document["data"]["creator_id"].encode(),
                )
            for event in [*keys.registrations(), *valid]:
                topic = spec_for_type(event.type).topic
                await producer.send_and_wait(topic, encode(event), key=event_key(event))
        finally:
            await producer.stop()

        records: list[ConsumerRecord[bytes, bytes]] = []

        def statuses() -> dict[str, set[str]]:
            found: dict[str, set[str]] = {}
            for record in records:
                if record.topic == Topic.PAYOUTS_STATUS:
                    event = json.loads(record.value or b"")
                    found.setdefault(event["data"]["deal_id"], set()).add(event["type"])
            return found

        def dead_letters() -> list[ConsumerRecord[bytes, bytes]]:
            return [r for r in records if r.topic == dlq_topic(Topic.CREATOR_PAYOUT_ACCOUNTS)]

        async def refresh() -> None:
            records[:] = await _read_topics(bootstrap)

        def mailed(address: str, status: str) -> bool:
            return any(
                m["To"] == address and str(m["Subject"]).endswith(f": {status}")
                for m in mailbox.messages
            )

        def done() -> bool:
            seen = statuses()
            return (
                "payout.sent" in seen.get(paid_deal, set())
                and "payout.failed" in seen.get(refused_deal, set())
                and len(dead_letters()) >= 4
                and mailed(secrets.paid_email, "sent")
                and mailed(secrets.refused_email, "failed")
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while not done():
            if loop.time() > deadline:
                pytest.fail(
                    f"the flow did not finish: statuses {statuses()}, "
                    f"{len(dead_letters())} dead letters, "
                    f"{len(mailbox.messages)} e-mails\n" + "\n".join(lines[-60:])
                )
            await asyncio.sleep(0.5)
            await refresh()
        assert len(stripe.transfers) == 1, "one transfer, after the outage"
        # What the services publish is signed with their key, as a brand can check.
        published = [r for r in records if r.topic == Topic.PAYOUTS_STATUS]
        assert published and all(
            signature_valid(json.loads(r.value or b""), service_key) for r in published
        )

        # Operators read the results: a statement with the refusal, the dead letters.
        cli = ["-m", "shared.tools.cli"]
        for argv in (
            [*cli, "payouts", "statement", refused_creator],
            [*cli, "dlq", "list", Topic.CREATOR_PAYOUT_ACCOUNTS],
            [*cli, "tail", dlq_topic(Topic.CREATOR_PAYOUT_ACCOUNTS), *TAIL_OPTIONS],
        ):
            code, output = await _run(argv, env)
            assert code == 0, output
            captured.add(f"`creatorflow {' '.join(argv[2:])}`", output)

        # Creators read their payout pages: what they are shown, never where the money goes.
        pages = await read_creator_pages(env, [paid_creator, refused_creator])
        page_tokens = {name: value for name, value in pages.items() if name.startswith("token")}
        for where, html in pages.items():
            if not where.startswith("token"):
                captured.add(where, html)
        assert "Failed" in pages[f"{refused_creator}'s page"]

        # The brand reads its API: fees and statuses, never where the money goes.
        answers = await read_brand_api(env, "br-1", [paid_creator, refused_creator])
        for where, text in answers.items():
            if where.startswith("token"):
                page_tokens[where] = text
            else:
                captured.add(where, text)
        assert '"status":"failed"' in answers[f"br-1's API /brand/v1/creators/{refused_creator}"]
    captured.add("service output", "\n".join(lines))

    # Service starts that must be refused, and what they print.
    wrong_key = await _run(
        ["-m", "services.payouts"], {**env, "PAYOUTS_DESTINATION_KEY": new_key(), "HTTP_PORT": ""}
    )
    assert wrong_key[0] == 2 and "another PAYOUTS_DESTINATION_KEY" in wrong_key[1], wrong_key
    captured.add("payouts start with another key", wrong_key[1])
    malformed = secrets.destination_key[:20]
    bad_key = await _run(
        ["-m", "services.payouts"], {**env, "PAYOUTS_DESTINATION_KEY": malformed, "HTTP_PORT": ""}
    )
    assert bad_key[0] != 0 and "PAYOUTS_DESTINATION_KEY" in bad_key[1], bad_key
    assert malformed not in bad_key[1]
    captured.add("payouts start with a malformed key", bad_key[1])

    # Every record on every output and dead-letter topic: key, value and headers.
    records = await _read_topics(bootstrap)
    for r in records:
        where = f"{r.topic}[{r.partition}]@{r.offset}"
        captured.add(f"{where} key", r.key)
        captured.add(f"{where} value", r.value)
        for name, value in r.headers or ():
            captured.add(f"{where} header {name}", f"{name}={value.decode('utf-8', 'replace')}")
    letters = [r for r in records if r.topic == dlq_topic(Topic.CREATOR_PAYOUT_ACCOUNTS)]
    masked = sorted(dict(r.headers or ()).get("dlq.masked.fields", b"").decode() for r in letters)
    assert masked == ["data.destination"] * 2 + ["data.destination,data.email"] * 2, masked

    # The e-mails creators got: what the page shows, never where the money goes.
    for n, message in enumerate(mailbox.messages):
        captured.add(f"e-mail {n} to a creator", message.as_string())

    # The database, every table: destinations only sealed, no credential anywhere.
    database = await asyncpg.connect(credentials.database_url)
    try:
        tables = await database.fetch(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        )
        assert {t["schemaname"] for t in tables} >= {"matching", "tracking", "payouts"}
        for schema, table in ((t["schemaname"], t["tablename"]) for t in tables):
            rows = await database.fetch(f'SELECT t::text AS row FROM "{schema}"."{table}" t')
            captured.add(f"table {schema}.{table}", "\n".join(r["row"] for r in rows))
    finally:
        await database.close()

    assert lines and any(r.topic == Topic.PAYOUTS_STATUS for r in records), "nothing captured"
    searched = sum(len(text) for _, text in captured.texts)
    searched_for = secrets.named() | private_keys | PEM_MARKERS | page_tokens
    leaks = captured.leaks(searched_for)
    # Addresses are kept where they are used: the accounts' table, and the e-mails themselves.
    personal = Captured(
        [
            (where, text)
            for where, text in captured.texts
            if where != "table payouts.payouts_accounts" and not where.startswith("e-mail ")
        ]
    )
    leaks += personal.leaks(secrets.personal())
    assert not leaks, "secrets found:\n" + "\n".join(leaks)
    print(
        f"secret leaks: {len(searched_for)} secrets and {len(secrets.personal())} e-mail "
        f"addresses searched in {len(captured.texts)} "
        f"captured texts ({searched:,} characters), {len(records)} topic records, none found"
    )
