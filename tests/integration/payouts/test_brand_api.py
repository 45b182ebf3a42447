"""The brand API on the real PostgreSQL and Redis: keys added, listed and revoked with
`creatorflow brands api-key`, 401 without a live key, another brand's campaign and creator
answered 404 like unknown ones, the per-key rate limit (429, `Retry-After`, `RateLimit-*` on
every answer), and attribution figures equal to the `attribution.updated` payouts consumed
through its unit of work (replays and older updates change nothing)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote

import asyncpg
import httpx
import hypothesis as hyp
import pytest
import redis.asyncio as redis
import schemathesis
from typer.testing import CliRunner

from services.payouts.app import make_setup, serve_asgi, units_of_work
from services.payouts.brand_api.keys import BrandKeys, key_hash
from services.payouts.brand_api.models import OPENAPI_PATH, Attribution
from services.payouts.brand_api.web import ApiConfig, brand_api_app
from services.payouts.destinations import DestinationCipher
from services.payouts.fixed_window import Limit
from services.payouts.handlers import PayoutPolicy
from services.payouts.schema import SCHEMA
from services.payouts.store.postgres import PostgresPayoutsStore
from shared.contract.events import CloudEvent
from shared.contract.money import Money
from shared.runtime.service import ServiceRuntime
from shared.tools.cli.main import app as creatorflow
from shared.tools.infra import InfraUrls
from shared.tools.infra.process import free_port
from tests.integration.payouts.service_setup import fast_settings
from tests.support.waiting import eventually
from tests.unit.payouts.builders import (
    T0,
    account,
    attribution,
    confirmed,
    deal_signed,
    funded,
    uid,
)
from tests.unit.payouts.harness import delivery

pytestmark = pytest.mark.integration

FEE: Final = Money.of("450.00", "USD")  # what each deal of builders.deal_signed pays
SETTINGS: Final = fast_settings()


def in_campaign(event: CloudEvent[Any], campaign_id: str) -> CloudEvent[Any]:
    return event.model_copy(
        update={"data": event.data.model_copy(update={"campaign_id": campaign_id})}
    )


def figures_event(deal_id: str, creator_id: str, revenue: str, hours: int) -> CloudEvent[Any]:
    """tracking's `attribution.updated` with every figure set, `hours` after T0."""
    event = attribution(deal_id, creator_id, Money.of(revenue, "USD"), T0 + timedelta(hours=hours))
    figures = {
        "posts": 3, "likes": 2310 + hours, "comments": 95, "shares": 40, "views": 21000,
        "impressions": 30500, "reach": 18700, "engagement_rate": Decimal("0.050600"),
        "orders": 12 + hours, "spend": Money.of("528.00", "USD"), "cpm": Decimal("17.3115"),
        "cpe": Decimal("0.2160"), "cpa": Decimal("44.0000"), "roas": Decimal("1.4773"),
        "roi_pct": Decimal("-47.73"), "saves": 120, "attribution_model": "last_click",
        "leak_suspected": True, "suspected_orders": 2, "withheld_orders": 1,
        "withheld_revenue": Money.of("64.90", "USD"),
    }  # fmt: skip
    return event.model_copy(update={"data": event.data.model_copy(update=figures)})


class Scene:
    """Brand A: campaign `cmp-a` with two creators (one deal funded, one waiting for funds)
    and `cmp-shared` with one; brand B: `cmp-b`, and a deal in a campaign of the same id as
    A's `cmp-shared`, with a creator A never hired."""

    def __init__(self) -> None:
        self.a, self.b = uid("br-a"), uid("br-b")
        self.ann, self.bo, self.cy = uid("cr-ann"), uid("cr-bo"), uid("cr-cy")
        self.ann_deal, self.bo_deal, self.ann_shared = uid("deal"), uid("deal"), uid("deal")
        self.b_deal, self.b_shared = uid("deal"), uid("deal")
        self.cmp_a, self.cmp_b, self.shared = uid("cmp-a"), uid("cmp-b"), uid("cmp-shared")
        self.destination = uid("acct_secret")
        self.email = f"{uid('ann')}@mail.example"
        self.consumed: dict[str, CloudEvent[Any]] = {}  # the attribution kept, by deal

    async def write(self, pool: asyncpg.Pool) -> None:
        db = PostgresPayoutsStore(pool)
        cipher = DestinationCipher.from_setting(SETTINGS.destination_key)
        consume = units_of_work(db, PayoutPolicy(), lambda: None, destinations=cipher)

        async def apply(*events: CloudEvent[Any]) -> None:
            await consume([(e, delivery(e)) for e in events])

        deals = [
            (self.a, self.cmp_a, self.ann_deal, self.ann),
            (self.a, self.cmp_a, self.bo_deal, self.bo),
            (self.a, self.shared, self.ann_shared, self.ann),
            (self.b, self.cmp_b, self.b_deal, self.cy),
            (self.b, self.shared, self.b_shared, self.cy),
        ]
        await apply(
            funded(self.a, FEE),  # one fee's worth: the second payout waits for funds
            *(account(c, currency="USD", form="W-9", destination=self.destination, email=self.email)
              for c in (self.ann, self.bo, self.cy)),
            *(in_campaign(deal_signed(d, c, brand_id=b), cmp) for b, cmp, d, c in deals),
        )  # fmt: skip
        for deal in (self.ann_deal, self.bo_deal):
            await apply(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
        # The latest update, then an older one arriving late and a replay: neither changes it.
        latest = figures_event(self.ann_deal, self.ann, "780.00", hours=5)
        await apply(latest)
        await apply(figures_event(self.ann_deal, self.ann, "100.00", hours=1), latest)
        self.consumed[self.ann_deal] = latest
        self.consumed[self.b_deal] = figures_event(self.b_deal, self.cy, "999.00", hours=2)
        await apply(self.consumed[self.b_deal])


@pytest.fixture(scope="module")
async def scene(db_pool: asyncpg.Pool) -> Scene:
    scene = Scene()
    await scene.write(db_pool)
    return scene


def api_client(app: object, key: str | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    return httpx.AsyncClient(transport=transport, base_url="https://api.test", headers=headers)


def cli(infra: InfraUrls, *args: str) -> Any:
    env = {"DATABASE_URL": infra.database_url, "COLUMNS": "200"}
    return CliRunner().invoke(creatorflow, ["brands", "api-key", *args], env=env)


async def new_key(pool: asyncpg.Pool, brand: str) -> str:
    return (await BrandKeys(pool).add(brand, T0)).key


async def test_operators_add_list_and_revoke_a_brands_key(
    infra: InfraUrls, db_pool: asyncpg.Pool, cache: redis.Redis, scene: Scene
) -> None:
    added = await asyncio.to_thread(cli, infra, "add", "--brand", scene.a)
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    shaped = re.fullmatch(r"cfk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}", key)
    assert shaped is not None, added.stdout
    key_id = shaped.group(1)
    assert f"revoke {key_id}" in added.stderr and key not in added.stderr
    # Stored as its hash only: the key itself is nowhere in the table.
    row = await db_pool.fetchrow("SELECT * FROM payouts_brand_api_keys WHERE key_id = $1", key_id)
    assert row is not None and row["brand_id"] == scene.a and row["revoked_at"] is None
    assert bytes(row["key_hash"]) == key_hash(key)
    assert key.encode() not in b"".join(str(v).encode() for v in row.values())

    listed = await asyncio.to_thread(cli, infra, "list", "--brand", scene.a)
    assert listed.exit_code == 0 and key_id in listed.output and key not in listed.output

    app = brand_api_app(PostgresPayoutsStore(db_pool), BrandKeys(db_pool), cache)
    async with api_client(app, key) as brand:
        assert (await brand.get("/brand/v1/campaigns")).status_code == 200
        revoked = await asyncio.to_thread(cli, infra, "revoke", key_id)
        assert revoked.exit_code == 0, revoked.output
        assert f"revoked {key_id} of brand {scene.a}" in revoked.output
        refused = await brand.get("/brand/v1/campaigns")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer ")

    # Clear errors, exit 1: an unknown brand, an unknown key id, something not a key id.
    unknown_brand = await asyncio.to_thread(cli, infra, "add", "--brand", uid("br-nobody"))
    assert unknown_brand.exit_code == 1 and "knows no brand" in unknown_brand.output
    unknown_list = await asyncio.to_thread(cli, infra, "list", "--brand", uid("br-nobody"))
    assert unknown_list.exit_code == 1 and "knows no brand" in unknown_list.output
    unknown_key = await asyncio.to_thread(cli, infra, "revoke", "0123456789ab")
    assert unknown_key.exit_code == 1 and "no API key has the id" in unknown_key.output
    not_an_id = await asyncio.to_thread(cli, infra, "revoke", key)
    assert not_an_id.exit_code == 1 and "is not a key id" in not_an_id.output


async def test_no_live_key_is_a_401_with_a_challenge(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: Scene
) -> None:
    key = await new_key(db_pool, scene.a)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")  # right id, wrong secret
    app = brand_api_app(PostgresPayoutsStore(db_pool), BrandKeys(db_pool), cache)
    for sent in (None, "", "not-a-key", forged, f"cfk_{'0' * 12}_{'A' * 43}"):
        async with api_client(app, sent) as caller:
            if sent == "":
                caller.headers["authorization"] = "Basic dXNlcjpwYXNz"
            answer = await caller.get(f"/brand/v1/campaigns/{scene.cmp_a}")
        assert answer.status_code == 401, sent
        challenge = answer.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="creatorflow-brand-api"'), challenge
        assert ('error="invalid_token"' in challenge) == (sent is not None)
        assert answer.json()["error"] == "unauthorized"
        assert scene.ann_deal not in answer.text and "ratelimit-limit" not in answer.headers


async def test_a_brand_sees_its_campaigns_figures_fees_and_statuses(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: Scene
) -> None:
    app = brand_api_app(PostgresPayoutsStore(db_pool), BrandKeys(db_pool), cache)
    async with api_client(app, await new_key(db_pool, scene.a)) as brand:
        listed = await brand.get("/brand/v1/campaigns")
        detail = await brand.get(f"/brand/v1/campaigns/{scene.cmp_a}")
        shared = await brand.get(f"/brand/v1/campaigns/{scene.shared}")
        creator = await brand.get(f"/brand/v1/creators/{scene.ann}")
    for answer in (listed, detail, shared, creator):
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        # Where creators are paid never leaves: not the destination, not their e-mail.
        assert scene.destination not in answer.text and scene.email not in answer.text

    campaigns = {c["campaign_id"]: c for c in listed.json()["campaigns"]}
    assert listed.json()["brand_id"] == scene.a and set(campaigns) == {scene.cmp_a, scene.shared}
    assert campaigns[scene.cmp_a]["deals"] == 2 and campaigns[scene.cmp_a]["creators"] == 2
    consumed = scene.consumed[scene.ann_deal].data
    assert campaigns[scene.cmp_a]["orders"] == consumed.orders
    usd = {"currency": "USD", "fees": {"amount": "900.00", "currency": "USD"},
           "paid": {"amount": "0.00", "currency": "USD"},
           "pending": {"amount": "900.00", "currency": "USD"},
           "clawed_back": {"amount": "0.00", "currency": "USD"},
           "revenue": {"amount": "780.00", "currency": "USD"},
           "spend": {"amount": "528.00", "currency": "USD"}}  # fmt: skip
    assert campaigns[scene.cmp_a]["totals"] == [usd]

    deals = {d["deal_id"]: d for d in detail.json()["deals"]}
    assert set(deals) == {scene.ann_deal, scene.bo_deal}
    ann = deals[scene.ann_deal]
    assert ann["creator_id"] == scene.ann and ann["fee"] == {"amount": "450.00", "currency": "USD"}
    assert ann["commission_rate"] == "0.10"
    # The figures are those of the latest update consumed, field for field.
    wire = consumed.model_dump(mode="json")
    assert ann["attribution"] == {name: wire[name] for name in Attribution.model_fields}
    assert deals[scene.bo_deal]["attribution"] is None
    # The funded deal's fee is scheduled; the other waits for the brand's funds.
    [ann_fee], [bo_fee] = ann["payouts"], deals[scene.bo_deal]["payouts"]
    assert (ann_fee["kind"], ann_fee["status"], ann_fee["awaiting_funds"]) == (
        "fee", "scheduled", False
    )  # fmt: skip
    assert (bo_fee["status"], bo_fee["awaiting_funds"]) == ("held", True)
    assert ann_fee["gross"] == {"amount": "450.00", "currency": "USD"}
    stored = await db_pool.fetch(
        "SELECT payout_id, status FROM payouts_payouts WHERE deal_id = ANY($1::text[])",
        [scene.ann_deal, scene.bo_deal],
    )
    assert sorted((r["payout_id"], r["status"]) for r in stored) == sorted(
        [(ann_fee["payout_id"], "scheduled"), (bo_fee["payout_id"], "held")]
    )

    # The same campaign id used by brand B: only A's deal is A's.
    assert [d["deal_id"] for d in shared.json()["deals"]] == [scene.ann_shared]
    assert {d["deal_id"] for d in creator.json()["deals"]} == {scene.ann_deal, scene.ann_shared}
    assert creator.json()["totals"][0]["fees"] == {"amount": "900.00", "currency": "USD"}


async def test_another_brands_campaign_or_creator_is_a_404_like_an_unknown_one(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: Scene
) -> None:
    app = brand_api_app(PostgresPayoutsStore(db_pool), BrandKeys(db_pool), cache)
    async with api_client(app, await new_key(db_pool, scene.a)) as brand:
        others = [
            await brand.get(f"/brand/v1/campaigns/{scene.cmp_b}"),
            await brand.get(f"/brand/v1/creators/{scene.cy}"),
        ]
        unknown = [
            await brand.get(f"/brand/v1/campaigns/{uid('cmp-nobody')}"),
            await brand.get(f"/brand/v1/creators/{uid('cr-nobody')}"),
        ]
    for other, nobody in zip(others, unknown, strict=True):
        assert other.status_code == nobody.status_code == 404
        assert other.json() == nobody.json()  # nothing tells them apart
        assert "ratelimit-remaining" in other.headers
        assert scene.b_deal not in other.text and scene.b not in other.text
    # B's own key sees B's deal, with the figures consumed for it.
    async with api_client(app, await new_key(db_pool, scene.b)) as b:
        mine = await b.get(f"/brand/v1/campaigns/{scene.cmp_b}")
    assert mine.status_code == 200
    [deal] = mine.json()["deals"]
    assert deal["deal_id"] == scene.b_deal
    assert deal["attribution"]["revenue"] == {"amount": "999.00", "currency": "USD"}


async def test_a_campaign_and_a_creator_whose_ids_hold_a_slash_can_be_opened(
    db_pool: asyncpg.Pool, cache: redis.Redis
) -> None:
    # The contract allows "/" in ids; the list names such a campaign, so it must open too.
    brand, creator = uid("br-slash"), f"cr/{uid('x')}"
    campaign, deal = f"cmp/{uid('q1')}", uid("deal")
    consume = units_of_work(
        PostgresPayoutsStore(db_pool),
        PayoutPolicy(),
        lambda: None,
        destinations=DestinationCipher.from_setting(SETTINGS.destination_key),
    )
    signed = in_campaign(deal_signed(deal, creator, brand_id=brand), campaign)
    await consume([(signed, delivery(signed))])
    app = brand_api_app(PostgresPayoutsStore(db_pool), BrandKeys(db_pool), cache)
    async with api_client(app, await new_key(db_pool, brand)) as api:
        listed = await api.get("/brand/v1/campaigns")
        answers = [
            await api.get(f"/brand/v1/campaigns/{quote(campaign, safe='')}"),
            await api.get(f"/brand/v1/campaigns/{campaign}"),
            await api.get(f"/brand/v1/creators/{quote(creator, safe='')}"),
        ]
    assert [c["campaign_id"] for c in listed.json()["campaigns"]] == [campaign]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert [d["deal_id"] for d in answer.json()["deals"]] == [deal]


async def test_each_key_has_its_own_rate_limit_with_headers_on_every_answer(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: Scene
) -> None:
    config = ApiConfig(per_key=Limit(3, 60))
    app = brand_api_app(PostgresPayoutsStore(db_pool), BrandKeys(db_pool), cache, config)
    first, second = await new_key(db_pool, scene.a), await new_key(db_pool, scene.a)
    async with api_client(app, first) as brand:
        answers = [
            await brand.get("/brand/v1/campaigns"),
            await brand.get(f"/brand/v1/campaigns/{scene.cmp_b}"),  # a 404 counts too
            await brand.get(f"/brand/v1/creators/{scene.ann}"),
            await brand.get("/brand/v1/campaigns"),
        ]
    assert [a.status_code for a in answers] == [200, 404, 200, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
    for answer in answers:
        assert answer.headers["ratelimit-limit"] == "3"
        assert 0 < int(answer.headers["ratelimit-reset"]) <= 60
    refused = answers[-1]
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert refused.json()["error"] == "rate_limited" and scene.ann_deal not in refused.text
    # Another key of the same brand has a window of its own.
    async with api_client(app, second) as brand:
        other = await brand.get("/brand/v1/campaigns")
    assert other.status_code == 200 and other.headers["ratelimit-remaining"] == "2"


async def test_without_redis_the_api_answers_503_and_nothing_else(
    db_pool: asyncpg.Pool, scene: Scene
) -> None:
    closed = free_port()  # nobody listens there
    down = redis.Redis(host="127.0.0.1", port=closed, socket_connect_timeout=1)
    app = brand_api_app(PostgresPayoutsStore(db_pool), BrandKeys(db_pool), down)
    async with api_client(app, await new_key(db_pool, scene.a)) as brand:
        answer = await brand.get(f"/brand/v1/campaigns/{scene.cmp_a}")
    await down.aclose()
    assert answer.status_code == 503 and answer.headers["retry-after"] == "30"
    assert answer.json()["error"] == "unavailable" and scene.ann_deal not in answer.text


async def test_the_payouts_service_serves_the_api_on_its_own_port(
    infra: InfraUrls, topics: None, db_pool: asyncpg.Pool, scene: Scene
) -> None:
    port = free_port()
    setup = make_setup(fast_settings(brand_api_port=port), group_id=uid("brand-api"))
    key = await new_key(db_pool, scene.a)
    async with (
        ServiceRuntime("payouts", setup, schema=SCHEMA, urls=infra),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):

        async def served() -> bool:
            try:
                return (await client.get("/brand/v1/openapi.json")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(served, what="the brand API served")
        document = (await client.get("/brand/v1/openapi.json")).json()
        answer = await client.get(
            f"/brand/v1/campaigns/{scene.cmp_a}", headers={"authorization": f"Bearer {key}"}
        )
    assert document["openapi"].startswith("3.1")
    assert answer.status_code == 200 and answer.headers["ratelimit-limit"] == "60"
    assert {d["deal_id"] for d in answer.json()["deals"]} == {scene.ann_deal, scene.bo_deal}


def fuzz(document: dict[str, Any], base_url: str, key: str, examples: int) -> int:
    """Requests drawn by schemathesis from the OpenAPI document (path parameters of every
    shape it allows), each answer checked against the document: status, headers, body.
    Returns how many requests were made."""
    schema = schemathesis.openapi.from_dict(document)
    made = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @hyp.settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(hyp.HealthCheck),
        )
        @hyp.given(case=operation.as_strategy())
        def check(case: Any) -> None:
            nonlocal made
            # On the case, so the auth check can take it away and expect a 401.
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
            response = case.call(base_url=base_url)
            case.validate_response(response)
            made += 1

        check()
    return made


async def test_a_schema_fuzzer_finds_every_answer_as_documented(
    db_pool: asyncpg.Pool, scene: Scene, infra: InfraUrls
) -> None:
    port = free_port()
    cache = redis.Redis.from_url(infra.redis_url)
    config = ApiConfig(per_key=Limit(10_000, 60))
    app = brand_api_app(PostgresPayoutsStore(db_pool), BrandKeys(db_pool), cache, config)
    server = asyncio.ensure_future(serve_asgi(app, "127.0.0.1", port))
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url) as client:

            async def served() -> bool:
                try:
                    return (await client.get(OPENAPI_PATH)).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(served, what="the brand API served")
            document = (await client.get(OPENAPI_PATH)).json()
        # Brand A's key, then B's on the same routes (A's ids are 404 to it).
        for brand in (scene.a, scene.b):
            key = await new_key(db_pool, brand)
            made = await asyncio.to_thread(fuzz, document, base_url, key, 25)
            assert made >= 3
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        await cache.aclose()
