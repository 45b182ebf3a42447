"""`creatorflow up` as an operator runs it: Ctrl-C leaves nothing behind, and the next `up`
resumes from the stored data (PostgreSQL and Redis persist in the data dir; the embedded Kafka
keeps its topics in memory, so they are created again)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.runtime.config import DEFAULT_DATABASE_PASSWORD
from tests.support.processes import processes_mentioning, python_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# A failure deadline, not a speed limit: the other test worker may be busy beside it.
WAIT_SECONDS = 120.0
PANEL_TITLE = "CreatorFlow is up"
SERVICE_NAMES = ("matching", "tracking", "payouts")


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time in clock ticks) of every process still running."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after its end.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":  # exited, only waiting to be reaped
            continue
        table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every process below `root`."""
    table = _process_table()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                frontier.append(pid)
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()).strip()
    except OSError:
        return "?"


@dataclass
class UpRun:
    """One `python -m shared.tools.cli up` process and what it printed."""

    data_dir: Path
    lines: list[str] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None
    pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")
        }
        env.update(CREATORFLOW_DATA_DIR=str(self.data_dir), COLUMNS="200", PYTHONUNBUFFERED="1")
        self.process = await python_process(
            "-m", "shared.tools.cli", "up", env=env, stdin=asyncio.subprocess.DEVNULL
        )
        self.pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode("utf-8", "replace").rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def fail(self, message: str) -> None:
        tail = "\n".join(self.lines[-60:])
        pytest.fail(f"{message}\n--- creatorflow up output (tail) ---\n{tail}")

    async def wait_until_up(self) -> dict[str, str]:
        """The printed panel's values, once every service is ready."""
        assert self.process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while not self._panel_complete():
            if self.process.returncode is not None:
                self.fail(
                    f"`creatorflow up` exited with {self.process.returncode} before it was up"
                )
            if loop.time() > deadline:
                self.fail(f"no '{PANEL_TITLE}' panel within {WAIT_SECONDS:.0f}s")
            await asyncio.sleep(0.1)
        return self._panel()

    def _panel_complete(self) -> bool:
        return PANEL_TITLE in self.output and "REDIS_URL=" in self.output

    def _panel(self) -> dict[str, str]:
        text = self.output[self.output.rindex(PANEL_TITLE) :]
        values = dict(re.findall(r"\b([A-Z_]+)=(\S+)", text))
        values.update(re.findall(r"\b(matching|tracking|payouts): (http://\S+/readyz)", text))
        return values

    async def interrupt(self) -> int:
        """Ctrl-C: SIGINT to `up` (its servers and services each run in their own process
        group, so a terminal's Ctrl-C reaches only `up`); its exit code."""
        assert self.process is not None and self.pump is not None
        self.process.send_signal(signal.SIGINT)
        try:
            code = await asyncio.wait_for(self.process.wait(), WAIT_SECONDS)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            self.fail(f"`creatorflow up` still running {WAIT_SECONDS:.0f}s after SIGINT")
        await self.pump
        return code

    async def stop_quietly(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self.pump is not None:
            await asyncio.gather(self.pump, return_exceptions=True)


def _database_url(panel: dict[str, str]) -> str:
    """The printed DATABASE_URL (password redacted) with the embedded server's password."""
    printed = panel["DATABASE_URL"]
    assert ":***@" in printed, f"the password should be redacted: {printed}"
    match = re.fullmatch(r"postgresql://postgres:\*\*\*@([\w.]+):(\d+)/(\w+)", printed)
    assert match, f"unexpected DATABASE_URL {printed}"
    host, port, database = match.groups()
    return f"postgresql://postgres:{DEFAULT_DATABASE_PASSWORD}@{host}:{port}/{database}"


def _profile(creator_id: str) -> bytes:
    data = {
        "creator_id": creator_id,
        "handle": f"@{creator_id}",
        "platform": "instagram",
        "followers": 32_000,
        "avg_likes": 1_250.0,
        "avg_comments": 48.0,
        "avg_shares": 20.0,
        "avg_views": 11_000.0,
        "posts_last_30d": 10,
        "bio": "Sourdough and weekend baking",
        "topics": ["baking", "sourdough"],
        "country": "US",
        "language": "en",
        "audience": {
            "countries": {"US": 0.7},
            "age": {"25-34": 0.5},
            "gender": {"female": 0.6, "male": 0.4, "other": 0.0},
        },
        "rate_card": {"post": {"amount": "350.00", "currency": "USD"}},
        "payout_currency": "USD",
    }
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "test/onboarding",
        "type": "creator.profile.upserted",
        "time": datetime.now(UTC).isoformat(),
        "subject": creator_id,
        "datacontenttype": "application/json",
        "data": data,
    }
    return json.dumps(event).encode()


async def _publish_profile(bootstrap: str, creator_id: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            "creator.profiles", _profile(creator_id), key=creator_id.encode()
        )
    finally:
        await producer.stop()


async def _stored_handles(database_url: str, creator_ids: list[str]) -> dict[str, Any]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT creator_id, profile::text AS profile FROM matching.matching_creators "
            "WHERE creator_id = ANY($1::text[])",
            creator_ids,
        )
    finally:
        await connection.close()
    return {row["creator_id"]: json.loads(row["profile"]).get("handle") for row in rows}


async def _wait_stored(run: UpRun, database_url: str, creator_id: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while creator_id not in await _stored_handles(database_url, [creator_id]):
        if loop.time() > deadline:
            run.fail(f"matching did not store {creator_id} within {WAIT_SECONDS:.0f}s")
        await asyncio.sleep(0.2)


async def _all_ready(panel: dict[str, str]) -> None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        for name in SERVICE_NAMES:
            response = await http.get(panel[name])
            assert response.status_code == 200, f"{name} not ready: {response.text}"


async def _refused(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2.0) as http:
        try:
            await http.get(url)
        except httpx.ConnectError:
            return True
    return False


async def _interrupt_and_check_nothing_left(run: UpRun, data_dir: Path) -> None:
    assert run.process is not None
    children = _descendants(run.process.pid)
    commands = {pid: _cmdline(pid) for pid in children}
    started = [c for c in commands.values() if "services." in c]
    assert len(started) == len(SERVICE_NAMES), f"service processes of `up`: {commands}"
    panel = run._panel()

    code = await run.interrupt()
    assert code == 0, f"exit code {code}\n{run.output[-3000:]}"
    assert "Stopped. Data stays in" in run.output

    alive = _process_table()
    survivors = [
        f"{pid}: {commands[pid]}"
        for pid, started_at in children.items()
        if pid in alive and alive[pid][1] == started_at
    ]
    assert survivors == [], "processes started by `up` survive it"
    assert processes_mentioning(str(data_dir)) == []
    for name in SERVICE_NAMES:
        assert await _refused(panel[name]), f"{name} still answers on {panel[name]}"


async def _operator_commands_find_the_stack(data_dir: Path, creator_id: str) -> None:
    """Reports and statements talk to the servers `up` started, without any URL set."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(CREATORFLOW_DATA_DIR=str(data_dir), COLUMNS="200")
    for command in (
        ["payouts", "statement", creator_id],
        ["report", "campaign", f"cmp-{creator_id}"],
    ):
        process = await python_process("-m", "shared.tools.cli", *command, env=env)
        output, _ = await process.communicate()
        text = output.decode()
        assert "no database" not in text, f"creatorflow {' '.join(command)}: {text}"


async def _started(run: UpRun) -> tuple[dict[str, str], str]:
    """`creatorflow up` started and every service ready: its panel and its database URL."""
    await run.start()
    panel = await run.wait_until_up()
    await _all_ready(panel)
    return panel, _database_url(panel)


async def test_up_stops_cleanly_on_ctrl_c_and_resumes_from_the_stored_data(
    tmp_path: Path,
) -> None:
    first_creator = f"cr-up-{uuid.uuid4().hex[:8]}"
    second_creator = f"cr-up-{uuid.uuid4().hex[:8]}"

    first = UpRun(tmp_path)
    try:
        panel, database_url = await _started(first)
        await _publish_profile(panel["KAFKA_BOOTSTRAP_SERVERS"], first_creator)
        await _wait_stored(first, database_url, first_creator)
        await _operator_commands_find_the_stack(tmp_path, first_creator)
        await _interrupt_and_check_nothing_left(first, tmp_path)
    finally:
        await first.stop_quietly()
    assert (tmp_path / "postgres" / "data").is_dir(), "the database stays in the data dir"

    second = UpRun(tmp_path)
    try:
        panel, database_url = await _started(second)
        stored = await _stored_handles(database_url, [first_creator])
        assert stored == {first_creator: f"@{first_creator}"}, "the first run's profile is gone"
        assert "creators=1 " in second.output, "matching rebuilt its index from Postgres"
        # The broker starts empty each time: the topics are there again and events flow.
        await _publish_profile(panel["KAFKA_BOOTSTRAP_SERVERS"], second_creator)
        await _wait_stored(second, database_url, second_creator)
        await _interrupt_and_check_nothing_left(second, tmp_path)
    finally:
        await second.stop_quietly()
