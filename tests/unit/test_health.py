"""Who may read /readyz and /metrics: anyone, or with HTTP_TOKEN only bearers of it."""

from __future__ import annotations

import httpx

from shared.runtime.health import HealthApp


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
