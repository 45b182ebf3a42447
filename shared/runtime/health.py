"""`/healthz`, `/readyz` and `/metrics` for a service process (an ASGI app served by uvicorn).

- `/healthz`: the process answers (liveness).
- `/readyz`: broker, database and cache reachable and the consumer holds partitions; 503 with
  the failing checks otherwise (readiness: keep traffic and rollouts waiting). An
  `informational` check (Redis, for a service that works without it) is reported, not counted.
- `/metrics`: Prometheus text format from the process's default registry.

With a token (`HTTP_TOKEN`), `/readyz` and `/metrics` answer only requests carrying
`Authorization: Bearer <token>` (401 otherwise); `/healthz` says nothing but "ok" and stays
open for liveness probes. deploy/SCALING.md says who should reach these at all.

A service may serve more under path prefixes of its own (`Resources.http_routes`, e.g. the
payouts service's rail webhooks under `/webhooks`): those apps authenticate their callers
themselves (a rail signs its webhooks; it cannot send our token).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from prometheus_client import make_asgi_app

Check = Callable[[], Awaitable[bool]]
Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

CHECK_TIMEOUT_SECONDS = 2.0


async def _run_check(check: Check) -> bool:
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
    except Exception:
        return False


class HealthApp:
    def __init__(
        self,
        service: str,
        checks: Mapping[str, Check],
        *,
        token: str | None = None,
        routes: Mapping[str, App] | None = None,
        informational: Collection[str] = (),
    ) -> None:
        self._service = service
        self._checks = dict(checks)
        # Checks reported by /readyz without deciding readiness (a server the service can
        # work without).
        self._informational = frozenset(informational)
        self._routes = dict(routes or {})
        self._metrics = make_asgi_app()
        self._expected = None if not token else f"Bearer {token}".encode()

    def _authorized(self, scope: Scope) -> bool:
        if self._expected is None:
            return True
        given = dict(scope.get("headers") or ()).get(b"authorization", b"")
        return hmac.compare_digest(given, self._expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        for prefix, app in self._routes.items():
            if path == prefix or path.startswith(prefix + "/"):
                await app(scope, receive, send)
                return
        if path in ("/metrics", "/readyz") and not self._authorized(scope):
            await json_answer(
                send,
                401,
                {"error": f"{path} needs the header Authorization: Bearer <HTTP_TOKEN>"},
                [(b"www-authenticate", b'Bearer realm="creatorflow"')],
            )
        elif path == "/metrics":
            await self._metrics(scope, receive, send)
        elif path == "/healthz":
            await json_answer(send, 200, {"service": self._service, "status": "ok"})
        elif path == "/readyz":
            results = await asyncio.gather(*(_run_check(c) for c in self._checks.values()))
            checks = dict(zip(self._checks, results, strict=True))
            ready = all(ok for name, ok in checks.items() if name not in self._informational)
            body = {"service": self._service, "ready": ready, "checks": checks}
            await json_answer(send, 200 if ready else 503, body)
        else:
            await json_answer(
                send, 404, {"error": f"no such path {path}; try /healthz, /readyz, /metrics"}
            )


async def json_answer(
    send: Send,
    status: int,
    body: dict[str, Any],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer an ASGI HTTP request with `body` as JSON, and `extra_headers` if any."""
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
