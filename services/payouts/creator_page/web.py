"""The creator payout page: server-rendered HTML (Starlette, Jinja2 templates that escape what
they show), refreshed by a few lines of plain JavaScript served from this package.

- `GET /c/link/{token}`: a page with a "Continue" button, and nothing else: mail scanners
  fetch links, so a GET changes nothing.
- `POST /c/link/{token}`: redeems the link once (rate-limited per address and per link in
  Redis, 429 with Retry-After past the limit), sets a Secure, HttpOnly, SameSite=Strict
  session cookie and redirects (303) to `/c/payouts`, a URL without the token.
- `GET /c/payouts` (and `/c/payouts/list`, the part the page polls): the session's creator's
  deals and payouts; `GET /c/payouts/{payout_id}` one of them, 404 for anyone else's.
- `GET /c/statements`: the months and years the creator has statements for, with links to
  `GET /c/statements/{YYYY-MM}.csv|pdf` (a month's statement) and `/c/statements/{YYYY}.csv|pdf`
  (the yearly earnings summary), always of the session's creator: no URL names a creator.
- `POST /c/sign-out` ends the session.

Every response is `no-store`, sends no referrer (a link's token stays out of other sites'
logs) and allows scripts and styles from this origin only.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import asyncpg
import redis.asyncio as redis
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.payouts.creator_page.access import (
    MAX_LINK_LIFETIME,
    CreatorAccess,
    Limit,
    RedemptionLimiter,
)
from services.payouts.creator_page.read import creator_deals
from services.payouts.creator_page.timeline import DealView, money_text, when
from services.payouts.domain.statements import Period, PeriodError
from services.payouts.statement_files import file_name, statement_csv, statement_pdf
from services.payouts.statements import creator_statement, statement_periods
from services.payouts.store.postgres import PostgresPayoutsStore

log = structlog.get_logger(__name__)

HERE: Final = Path(__file__).resolve().parent
SESSION_COOKIE: Final = "creatorflow_session"
PAYOUTS_PATH: Final = "/c/payouts"
STATEMENTS_PATH: Final = "/c/statements"
# A statement's file: `2026-11.csv`, `2026.pdf`; the period is checked by `Period.parse`.
_STATEMENT_FILE: Final = re.compile(r"(.{1,20})\.(csv|pdf)")
_MEDIA_TYPES: Final = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}
_HEADERS: Final = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# Redemptions: 20 a minute from one address, 5 per link in ten minutes (a creator who
# double-clicks is fine; someone guessing is not).
PER_IP: Final = Limit(20, 60)
PER_LINK: Final = Limit(5, 600)


@dataclass(frozen=True)
class PageConfig:
    session_lifetime: timedelta = timedelta(hours=12)
    per_ip: Limit = PER_IP
    per_link: Limit = PER_LINK
    poll_seconds: int = 15


def page_app(
    pool: asyncpg.Pool,
    cache: redis.Redis,
    config: PageConfig | None = None,
    *,
    clock: Clock = utc_now,
) -> ASGIApp:
    """The page's ASGI app over payouts' pool (its schema) and a Redis client."""
    config = config or PageConfig()
    pages = _Pages(
        CreatorAccess(pool),
        pool,
        RedemptionLimiter(cache, per_ip=config.per_ip, per_link=config.per_link),
        config,
        clock,
    )
    app = Starlette(
        routes=[
            Route("/c/link/{token}", pages.link, methods=["GET"]),
            Route("/c/link/{token}", pages.redeem, methods=["POST"]),
            Route(PAYOUTS_PATH, pages.payouts, methods=["GET"]),
            Route(PAYOUTS_PATH + "/list", pages.payouts_list, methods=["GET"]),
            Route(PAYOUTS_PATH + "/{payout_id}", pages.one_payout, methods=["GET"]),
            Route(STATEMENTS_PATH, pages.statements, methods=["GET"]),
            Route(STATEMENTS_PATH + "/{name}", pages.statement_file, methods=["GET"]),
            Route("/c/sign-out", pages.sign_out, methods=["POST"]),
            Mount("/c/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={404: pages.not_found, 405: pages.not_found},
    )
    return _SecurityHeaders(app)


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode().lower() not in _HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in _HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_with_headers)


class _Pages:
    def __init__(
        self,
        access: CreatorAccess,
        pool: asyncpg.Pool,
        limiter: RedemptionLimiter,
        config: PageConfig,
        clock: Clock,
    ) -> None:
        self._access = access
        self._pool = pool
        self._limiter = limiter
        self._config = config
        self._clock = clock
        self._templates = Jinja2Templates(directory=HERE / "templates")
        self._templates.env.filters["when"] = when
        self._templates.env.filters["money"] = _money

    def _render(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        return self._templates.TemplateResponse(
            request, name, dict(context or {}), status_code=status, headers=headers
        )

    def _message(
        self,
        request: Request,
        status: int,
        title: str,
        text: str,
        *,
        back: str | None = None,
        **headers: str,
    ) -> Response:
        """A page saying `text`, with a link to `back` (a page of the signed-in creator's)."""
        context = {
            "title": title,
            "text": text[:1].upper() + text[1:],
            "back": None if back is None else (back, _BACK[back]),
        }
        return self._render(request, "message.html", context, status=status, headers=headers)

    async def link(self, request: Request) -> Response:
        # No lookup and no state change: a scanner that fetches the link learns nothing and
        # uses nothing up.
        # The form posts back to this URL, so the token is not repeated in the HTML.
        lasting = _duration(self._config.session_lifetime)
        return self._render(request, "link.html", {"lasting": lasting})

    async def redeem(self, request: Request) -> Response:
        token = request.path_params["token"]
        ip = request.client.host if request.client else "unknown"
        try:
            wait = await self._limiter.retry_after(ip, token)
        except (redis.RedisError, OSError) as error:
            log.warning(
                "creator page: rate limiter unavailable; refusing redemptions",
                error=type(error).__name__,
            )
            return self._message(
                request, 503, "Please try again in a minute", _TRY_AGAIN, **{"retry-after": "60"}
            )
        if wait is not None:
            again = _duration(timedelta(minutes=max(1, math.ceil(wait / 60))))
            return self._message(
                request,
                429,
                "Too many attempts",
                f"{_TOO_MANY} Try again in {again}.",
                **{"retry-after": str(wait)},
            )
        session = await self._access.redeem(token, self._clock(), self._config.session_lifetime)
        if session is None:
            return self._message(request, 410, "This link cannot be used", _LINK_REFUSED)
        response = RedirectResponse(PAYOUTS_PATH, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=int(self._config.session_lifetime.total_seconds()),
            path="/",
            secure=True,
            httponly=True,
            samesite="strict",
        )
        return response

    async def _creator(self, request: Request) -> str | None:
        return await self._access.creator_of(request.cookies.get(SESSION_COOKIE), self._clock())

    def _signed_out(self, request: Request) -> Response:
        return self._message(request, 401, "Please open a new link", _SIGNED_OUT)

    async def _deals(self, creator: str) -> tuple[list[DealView], str, str]:
        """The creator's deals, the part of the page that shows them (escaped by the
        template), and its version: the refresh asks for it with `If-None-Match` and swaps
        nothing while it is unchanged (poll.js)."""
        deals = await creator_deals(self._pool, creator)
        html = self._templates.env.get_template("_deals.html").render(deals=deals)
        return deals, html, '"' + hashlib.sha256(html.encode()).hexdigest()[:20] + '"'

    async def payouts(self, request: Request) -> Response:
        creator = await self._creator(request)
        if creator is None:
            return self._signed_out(request)
        deals, _, version = await self._deals(creator)
        context = {
            "creator_id": creator,
            "deals": deals,
            "version": version,
            "poll": self._config.poll_seconds,
        }
        return self._render(request, "payouts.html", context)

    async def payouts_list(self, request: Request) -> Response:
        creator = await self._creator(request)
        if creator is None:
            return self._signed_out(request)
        _, html, version = await self._deals(creator)
        if version in _entity_tags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers={"etag": version})
        return Response(html, media_type="text/html", headers={"etag": version})

    async def one_payout(self, request: Request) -> Response:
        creator = await self._creator(request)
        if creator is None:
            return self._signed_out(request)
        wanted = request.path_params["payout_id"]
        for deal in await creator_deals(self._pool, creator):
            for payout in deal.payouts:
                if payout.payout_id == wanted:
                    context = {"deal": deal, "payout": payout}
                    return self._render(request, "payout.html", context)
        return await self.not_found(request, None)

    async def statements(self, request: Request) -> Response:
        creator = await self._creator(request)
        if creator is None:
            return self._signed_out(request)
        months, years = await statement_periods(PostgresPayoutsStore(self._pool), creator)
        context = {"creator_id": creator, "months": months, "years": years}
        return self._render(request, "statements.html", context)

    async def statement_file(self, request: Request) -> Response:
        """A month's statement or a year's earnings summary, as CSV or PDF: read-only, the
        session's creator's only. A period with nothing in it is an empty statement."""
        creator = await self._creator(request)
        if creator is None:
            return self._signed_out(request)
        shaped = _STATEMENT_FILE.fullmatch(request.path_params["name"])
        if shaped is None:
            return self._message(
                request, 404, "No such statement", _NO_SUCH_STATEMENT, back=STATEMENTS_PATH
            )
        try:
            period = Period.parse(shaped.group(1))
        except PeriodError as error:
            return self._message(
                request, 400, "Not a statement period", f"{error}.", back=STATEMENTS_PATH
            )
        extension = shaped.group(2)
        statement = await creator_statement(PostgresPayoutsStore(self._pool), creator, period)
        body = statement_csv(statement) if extension == "csv" else statement_pdf(statement)
        disposition = f'attachment; filename="{file_name(statement, extension)}"'
        return Response(
            body, media_type=_MEDIA_TYPES[extension], headers={"content-disposition": disposition}
        )

    async def sign_out(self, request: Request) -> Response:
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            await self._access.end_session(session)
        response = self._message(request, 200, "You are signed out", _SIGNED_OUT_DONE)
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict"
        )
        return response

    async def not_found(self, request: Request, _error: Exception | None) -> Response:
        return self._message(request, 404, "Not found", _NOT_FOUND, back=PAYOUTS_PATH)


def _entity_tags(header: str) -> set[str]:
    """The tags of an `If-None-Match` header, weak ones (`W/"..."`, as a proxy may send
    them) as their strong form (RFC 9110 compares them weakly here)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _duration(length: timedelta) -> str:
    """`length` in words, never more than it is: "12 hours", "1 hour", "90 minutes"."""
    minutes = int(length.total_seconds() // 60)
    if minutes % 60 == 0 and minutes:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _money(value: Any) -> str:
    return "" if value is None else money_text(value)


_MINUTES: Final = int(MAX_LINK_LIFETIME.total_seconds() // 60)
_LINK_REFUSED: Final = (
    "The link has expired, was already used, or is incomplete. Links work once and for "
    f"at most {_MINUTES} minutes. Ask us for a new one."
)
_TOO_MANY: Final = "Too many attempts to open this link."
_TRY_AGAIN: Final = "We cannot open links right now. Please try again in a minute."
_SIGNED_OUT: Final = (
    "Your session has ended or was never opened. Open the newest link we sent you, or ask "
    "us for a new one."
)
_SIGNED_OUT_DONE: Final = "To come back, open a new link."
_NO_SUCH_STATEMENT: Final = (
    "Statements are files named after their period: 2026-11.csv or 2026-11.pdf for a month, "
    "2026.csv or 2026.pdf for a year. Your statements page lists them."
)
_NOT_FOUND: Final = "There is nothing here for you."
_BACK: Final = {PAYOUTS_PATH: "Back to your payouts", STATEMENTS_PATH: "Back to your statements"}
