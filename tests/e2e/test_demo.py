"""`creatorflow demo` as a user runs it: a fresh data directory, one command, exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.payouts.creator_page.web import SESSION_COOKIE
from shared.contract.events import EVENT_SPECS
from shared.tools.infra.process import free_port
from tests.support.processes import processes_mentioning

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CREATORFLOW_DATA_DIR": str(tmp_path), "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "shared.tools.cli", "demo", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )


def test_demo_plays_a_campaign_whose_figures_match_the_ground_truth(tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    hires = 12
    result = _demo(
        tmp_path, "--creators", "1200", "--hires", str(hires), "--summary-json", str(summary_file)
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    for heading in ("Shortlist for", "reach and engagement", "sales and returns", "fee payouts"):
        assert heading in out
    assert "Summary" in out
    assert "every figure matches the ground truth" in out
    assert str(tmp_path / "demo") in out, "the demo says where the data is"

    summary = json.loads(summary_file.read_text())
    assert summary["hires"] == hires
    assert summary["attribution_matching_truth"] == hires and summary["attribution_wrong"] == []
    assert summary["payouts_correct"] == hires and summary["payouts_wrong"] == []
    # The totals the services published equal the ones the scenario computed on its own.
    assert summary["observed_totals"] == summary["truth_totals"]
    assert summary["truth_totals"]["orders"] > 0
    # The campaign's own event carries its deals' sums and the shop's orders of unknown codes.
    assert summary["campaign_matches_deals"], summary
    assert "orders of the brand with unknown codes" in out
    assert {"JPY", "KWD", "BHD"} <= set(summary["payout_currencies"])
    showcase = summary["rails_showcase"]
    assert [r["what"] for r in showcase] == ["PayPal payout", "Wise payout", "returned, re-sent"]
    assert all(r["matches_truth"] for r in showcase), showcase
    assert "sent → failed" in showcase[2]["seen"], showcase
    assert "returned, re-sent: " in out
    # One creator's code leaked to a coupon site: flagged once, as the scenario says.
    assert summary["leaked_code"]["matches_truth"], summary["leaked_code"]
    assert "orders from coupon sites" in summary["leaked_code"]["seen"]
    assert "leaked code: " in out
    assert len(summary["confirm_to_sent_ms"]) >= hires - 3  # held and manual ones excluded
    # Deals whose last deliverable a post confirmed, measured from that post reaching Kafka,
    # beside the floor of the same three hops.
    assert summary["post_to_sent_ms"] and min(summary["post_to_sent_ms"]) > 0
    assert len(summary["floor_ms"]) == 200 and min(summary["floor_ms"]) > 0
    assert "post observed → deliverable confirmed → payout.sent over" in out
    # It ends with a link to one creator's payout page.
    link = re.search(r"^http://127\.0\.0\.1:8090/c/link/[A-Za-z0-9_-]{43}$", out, re.MULTILINE)
    assert link is not None, out[-2000:]
    assert processes_mentioning(str(tmp_path)) == []


async def test_demo_open_serves_the_creators_page_until_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CREATORFLOW_DATA_DIR": str(tmp_path),
        "COLUMNS": "160",
        "PAYOUTS_PAGE_PORT": str(port),
    }
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.tools.cli", "demo", "--creators", "400", "--hires", "4",
        "--open",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert demo.stdout is not None
    output: list[str] = []
    try:
        link = None
        while link is None:
            line = (await asyncio.wait_for(demo.stdout.readline(), 400)).decode()
            assert line, "".join(output[-60:])
            output.append(line)
            if line.startswith(f"http://127.0.0.1:{port}/c/link/"):
                link = line.strip()
        while "Serving the page" not in output[-1]:
            output.append((await asyncio.wait_for(demo.stdout.readline(), 60)).decode())
        async with httpx.AsyncClient(timeout=30) as browser:
            assert (await browser.get(link)).status_code == 200
            redeemed = await browser.post(link)
            assert redeemed.status_code == 303, redeemed.text
            session = redeemed.cookies[SESSION_COOKIE]
            page = await browser.get(
                f"http://127.0.0.1:{port}/c/payouts",
                headers={"cookie": f"{SESSION_COOKIE}={session}"},
            )
        assert page.status_code == 200 and "Work confirmed" in page.text, page.text
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(demo.communicate(), 60)
    assert demo.returncode == 0, "".join(output[-40:]) + rest.decode()
    assert processes_mentioning(str(tmp_path)) == []


def test_demo_smoke_flow_and_stops_everything(tmp_path: Path) -> None:
    result = _demo(tmp_path, "--smoke")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"{len(EVENT_SPECS)} events stored and counted" in out  # one of each v1 type
    assert "2 broken messages in the DLQ" in out
    assert "InvalidJSON" in out and "SchemaViolation" in out
    assert "data.followers" in out, "the DLQ reason names the field"
    assert ":***@" in out and "creatorflow@" not in out, "the database password stays hidden"
    assert processes_mentioning(str(tmp_path)) == []
