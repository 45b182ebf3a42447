"""The brand API's HTTP side (Starlette): read-only JSON under `/brand/v1/`.

- `GET /brand/v1/campaigns`: the brand's campaigns with totals per currency.
- `GET /brand/v1/campaigns/{campaign_id}`: per deal, the attribution, fee and payouts.
- `GET /brand/v1/creators/{creator_id}`: the brand's deals with one creator.
- `GET /brand/v1/openapi.json`: the OpenAPI document (public: it names no data).

Every data request carries `Authorization: Bearer <key>`; a missing, malformed, unknown or
revoked key is a 401 with `WWW-Authenticate`. A key sees its own brand's data only: another
brand's campaign or creator is a 404, exactly as one that does not exist, so a key learns
nothing of other brands. Each key is rate-limited in fixed windows in Redis: every answer to
a valid key has `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`, and one over
the limit is a 429 with `Retry-After`. With Redis unreachable the API answers 503 (the
limit cannot be kept) while payouts go on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import redis.asyncio as redis
import structlog
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from services.payouts.brand_api import read
from services.payouts.brand_api.keys import BrandKeys, Caller
from services.payouts.brand_api.models import (
    OPENAPI_PATH,
    PREFIX,
    Campaign,
    CampaignDetail,
    CampaignList,
    CreatorDetail,
    CurrencyTotals,
    Deal,
    Problem,
    ProblemKind,
    openapi_document,
)
from services.payouts.domain.brand_view import totals
from services.payouts.fixed_window import Limit, Window, count_one
from services.payouts.store.port import PayoutsStore

log = structlog.get_logger(__name__)

REALM: Final = "creatorflow-brand-api"
LIMIT_PREFIX: Final = "creatorflow:payouts:brand-api"
_HEADERS: Final = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
_UNAVAILABLE_RETRY: Final = "30"


PER_KEY: Final = Limit(60, 60)  # PAYOUTS_BRAND_API_RATE_LIMIT, ..._WINDOW_SECONDS


@dataclass(frozen=True)
class ApiConfig:
    per_key: Limit = PER_KEY


Answer = Callable[[Caller, Request], Awaitable[Response]]


def brand_api_app(
    db: PayoutsStore, keys: BrandKeys, cache: redis.Redis, config: ApiConfig | None = None
) -> ASGIApp:
    """The API's ASGI app over payouts' store, its keys and a Redis client."""
    api = _Api(db, keys, cache, config or ApiConfig())
    document = openapi_document()

    async def openapi(_request: Request) -> Response:
        return JSONResponse(document, headers=_HEADERS)

    return Starlette(
        routes=[
            Route(OPENAPI_PATH, openapi, methods=["GET"]),
            Route(PREFIX + "/campaigns", api.guarded(api.campaigns), methods=["GET"]),
            # `:path`: an id may hold a "/" (the contract allows it), sent as %2F or as is.
            Route(
                PREFIX + "/campaigns/{campaign_id:path}",
                api.guarded(api.campaign),
                methods=["GET"],
            ),
            Route(
                PREFIX + "/creators/{creator_id:path}", api.guarded(api.creator), methods=["GET"]
            ),
        ],
        exception_handlers={404: _not_found, 405: _not_allowed},
    )


class _Api:
    def __init__(
        self, db: PayoutsStore, keys: BrandKeys, cache: redis.Redis, config: ApiConfig
    ) -> None:
        self._db = db
        self._keys = keys
        self._cache = cache
        self._config = config

    def guarded(self, answer: Answer) -> Callable[[Request], Awaitable[Response]]:
        """`answer` for a valid key within its rate limit, with the rate-limit headers."""

        async def endpoint(request: Request) -> Response:
            caller = await self._caller(request)
            if caller is None:
                return _unauthorized(request)
            try:
                window = await count_one(
                    self._cache, f"{LIMIT_PREFIX}:{caller.key_id}", self._config.per_key
                )
            except (redis.RedisError, OSError) as error:
                log.warning(
                    "brand API: rate limiter unavailable; refusing requests",
                    error=type(error).__name__,
                )
                return _problem(
                    503,
                    "unavailable",
                    "The API cannot keep its rate limits right now; try again shortly.",
                    {"retry-after": _UNAVAILABLE_RETRY},
                )
            if window.exceeded:
                response = _problem(
                    429,
                    "rate_limited",
                    f"More than {window.limit.attempts} requests in "
                    f"{window.limit.window_seconds} s with this key.",
                    {"retry-after": str(window.reset_seconds)},
                )
            else:
                response = await answer(caller, request)
            response.headers.update(_rate_headers(window))
            return response

        return endpoint

    async def _caller(self, request: Request) -> Caller | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return await self._keys.caller(key.strip())

    async def campaigns(self, caller: Caller, _request: Request) -> Response:
        summaries = await read.campaigns(self._db, caller.brand_id)
        body = CampaignList(brand_id=caller.brand_id, campaigns=[Campaign.of(s) for s in summaries])
        return _json(body)

    async def campaign(self, caller: Caller, request: Request) -> Response:
        found = await read.campaign(self._db, caller.brand_id, request.path_params["campaign_id"])
        if found is None:
            return _problem(404, "not_found", "No campaign of yours has this id.")
        summary, lines = found
        body = CampaignDetail(
            brand_id=caller.brand_id,
            campaign=Campaign.of(summary),
            deals=[Deal.of(line) for line in lines],
        )
        return _json(body)

    async def creator(self, caller: Caller, request: Request) -> Response:
        creator_id = request.path_params["creator_id"]
        lines = await read.creator(self._db, caller.brand_id, creator_id)
        if lines is None:
            return _problem(404, "not_found", "None of your deals is with this creator.")
        body = CreatorDetail(
            brand_id=caller.brand_id,
            creator_id=creator_id,
            totals=[CurrencyTotals.of(t) for t in totals(lines)],
            deals=[Deal.of(line) for line in lines],
        )
        return _json(body)


def _json(body: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        body.model_dump(mode="json"), status_code=status, headers={**_HEADERS, **(headers or {})}
    )


def _problem(
    status: int, error: ProblemKind, message: str, headers: dict[str, str] | None = None
) -> Response:
    return _json(Problem(error=error, message=message), status, headers)


def _rate_headers(window: Window) -> dict[str, str]:
    return {
        "ratelimit-limit": str(window.limit.attempts),
        "ratelimit-remaining": str(window.remaining),
        "ratelimit-reset": str(window.reset_seconds),
    }


def _unauthorized(request: Request) -> Response:
    """RFC 6750: no credentials get the bare challenge; a key that was sent and refused gets
    `error="invalid_token"` too."""
    challenge = f'Bearer realm="{REALM}"'
    if request.headers.get("authorization"):
        challenge += ', error="invalid_token"'
    return _problem(
        401,
        "unauthorized",
        "Send `Authorization: Bearer <key>` with a live key of your brand.",
        {"www-authenticate": challenge},
    )


async def _not_found(_request: Request, _error: Exception) -> Response:
    return _problem(404, "not_found", "No such resource.")


async def _not_allowed(_request: Request, _error: Exception) -> Response:
    return _problem(405, "not_allowed", "The brand API is read-only: GET only.")
