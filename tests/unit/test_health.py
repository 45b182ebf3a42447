"""Who may read /readyz and /metrics: anyone, or with HTTP_TOKEN only bearers of it."""

from __future__ import annotations

import httpx

from shared.runtime.health import HealthApp, Receive, Scope, Send


async def _ready() -> bool:
    return True


def _client(token: str | None) -> httpx.AsyncClient:
    app = HealthApp("svc", {"database": _ready}, token=token)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


async def test_without_a_token_every_path_is_open() -> None:
    async with _client(None) as http:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(path)).status_code == 200


async def test_with_a_token_readiness_and_metrics_need_it() -> None:
    async with _client("s3cret") as http:
        assert (await http.get("/healthz")).status_code == 200
        for path in ("/readyz", "/metrics"):
            refused = await http.get(path)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert "s3cret" not in refused.text
            wrong = await http.get(path, headers={"Authorization": "Bearer guess"})
            assert wrong.status_code == 401
            right = await http.get(path, headers={"Authorization": "Bearer s3cret"})
            assert right.status_code == 200


async def test_a_services_own_routes_are_served_by_prefix_without_the_token() -> None:
    seen: list[str] = []

    async def hooks(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = HealthApp("svc", {"database": _ready}, token="s3cret", routes={"/hooks": hooks})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        assert (await http.post("/hooks/stripe")).status_code == 202
        assert (await http.post("/hooks")).status_code == 202
        assert (await http.post("/hooksmith")).status_code == 404
        assert (await http.get("/metrics")).status_code == 401
    assert seen == ["/hooks/stripe", "/hooks"]


async def test_an_informational_check_is_reported_without_deciding_readiness() -> None:
    async def down() -> bool:
        return False

    checks = {"database": _ready, "cache": down}
    counted = HealthApp("svc", checks)
    reported = HealthApp("svc", checks, informational=("cache",))
    for app, status in ((counted, 503), (reported, 200)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
            answer = await http.get("/readyz")
        assert answer.status_code == status
        assert answer.json()["checks"] == {"database": True, "cache": False}
    database_down = HealthApp("svc", {"database": down, "cache": _ready}, informational=("cache",))
    transport = httpx.ASGITransport(app=database_down)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        assert (await http.get("/readyz")).status_code == 503
