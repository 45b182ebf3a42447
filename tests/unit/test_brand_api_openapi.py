"""The brand API's OpenAPI document: the committed docs/brand-api.openapi.json is what the
models generate (`creatorflow docs openapi --check` fails otherwise), every reference
resolves, and every route the app serves is in it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.routing import Route
from typer.testing import CliRunner

from services.payouts.brand_api.models import OPENAPI_PATH, openapi_document
from services.payouts.brand_api.web import brand_api_app
from shared.tools.cli.docs import openapi_text
from shared.tools.cli.main import app

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "brand-api.openapi.json"


def test_the_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == openapi_text(), (
        "docs/brand-api.openapi.json is out of date: run `creatorflow docs openapi`"
    )


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves_and_every_route_is_described() -> None:
    document = openapi_document()
    for ref in _refs(document):
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref
    served = {
        # `{campaign_id:path}` is the route's converter; the document names `{campaign_id}`.
        re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for route in brand_api_app(None, None, None).routes  # type: ignore[arg-type, attr-defined]
        if isinstance(route, Route)
    }
    assert served - {OPENAPI_PATH} == set(document["paths"])
    for path, item in document["paths"].items():
        responses = item["get"]["responses"]
        assert {"200", "401", "429", "503"} <= set(responses), path
        assert "RateLimit-Remaining" in responses["200"]["headers"], path
        assert ("404" in responses) == ("{" in path), path


def test_check_fails_on_a_stale_file_and_writing_fixes_it(tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "brand-api.openapi.json"
    target.write_text("{}\n", encoding="utf-8")
    checked = runner.invoke(app, ["docs", "openapi", "--check", "--file", str(target)])
    assert checked.exit_code == 1 and "creatorflow docs openapi" in checked.output
    assert target.read_text(encoding="utf-8") == "{}\n"
    written = runner.invoke(app, ["docs", "openapi", "--file", str(target)])
    assert written.exit_code == 0, written.output
    assert target.read_bytes() == COMMITTED.read_bytes()
    again = runner.invoke(app, ["docs", "openapi", "--check", "--file", str(target)])
    assert again.exit_code == 0, again.output
