"""The services as separate OS processes (`python -m services.<name>`), for `creatorflow up`
and the demo: labelled output, readiness through `/readyz`, no orphans."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from shared.tools.infra.process import InfraError, die_with_parent, free_port

SERVICES = ("matching", "tracking", "payouts")

LineSink = Callable[[str, str], None]


def available_services() -> list[str]:
    """The services whose package can be run with `python -m` in this checkout."""
    return [s for s in SERVICES if importlib.util.find_spec(f"services.{s}.__main__") is not None]


async def service_metrics(http_port: int, *, request_seconds: float = 5.0) -> list[Metric]:
    """What a service running on this machine shows on `/metrics` (its HTTP port), parsed;
    raises httpx.HTTPError if it does not answer."""
    async with httpx.AsyncClient(timeout=request_seconds) as http:
        text = (await http.get(f"http://127.0.0.1:{http_port}/metrics")).text
    return list(text_string_to_metric_families(text))


def member_suffix(data_dir: Path) -> str:
    """The static members' suffix of the supervisor using `data_dir`, the same at each run:
    made once and kept there. A static member that stops does not leave its group, and
    members under new ids had to wait for it: the embedded broker kept the stopped members'
    partitions for minutes, so `up` started again against running servers was not ready in
    two minutes. Under the same ids, the new members replace them."""
    kept = data_dir / "group-member-suffix"
    if kept.is_file() and (suffix := kept.read_text().strip()):
        return suffix
    data_dir.mkdir(parents=True, exist_ok=True)
    suffix = secrets.token_hex(3)
    kept.write_text(suffix + "\n")
    return suffix


@dataclass
class ServiceProcess:
    name: str  # the service
    label: str  # this instance: the service's name, or another label for a second instance
    process: asyncio.subprocess.Process
    http_port: int
    pump: asyncio.Task[None]


@dataclass
class ServiceProcesses:
    """Starts each named service with `env` (server URLs) and forwards its output lines to
    `sink(label, line)`; an async context manager that stops them (SIGTERM, then SIGKILL).

    More instances of a service can join under other labels (`launch`), and any instance can
    be killed or stopped on its own, as a scheduler or an operator would.
    """

    names: Sequence[str]
    env: Mapping[str, str]
    sink: LineSink
    running: dict[str, ServiceProcess] = field(default_factory=dict)
    # Each label is a static group member (KAFKA_GROUP_INSTANCE_ID) that keeps its id across
    # restarts, so a restarted instance takes its partitions back at once; the suffix keeps
    # two supervisors on one cluster from fencing each other's members, and a supervisor
    # started again on the same cluster gives the same one (`member_suffix`): members that
    # stopped with the last run are then replaced, not waited for. An empty
    # KAFKA_GROUP_INSTANCE_ID in `env` turns static membership off.
    instance_suffix: str = field(default_factory=lambda: secrets.token_hex(3))

    async def start(self, *, ready_seconds: float = 120.0) -> None:
        for name in self.names:
            await self.launch(name)
        await asyncio.gather(*(self.wait_ready(label, ready_seconds) for label in self.running))

    async def launch(self, name: str, label: str | None = None) -> ServiceProcess:
        """Start one instance of service `name` under `label` (default: the name)."""
        label = label or name
        if label in self.running:
            raise InfraError(f"an instance labelled {label} is already running")
        port = free_port()
        env = {
            **os.environ,
            "KAFKA_GROUP_INSTANCE_ID": f"{label}-{self.instance_suffix}",
            **self.env,
            "HTTP_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"services.{name}",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        pump = asyncio.create_task(self._pump(label, process))
        self.running[label] = instance = ServiceProcess(name, label, process, port, pump)
        return instance

    async def _pump(self, label: str, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            self.sink(label, line.decode("utf-8", "replace").rstrip())

    async def wait_ready(self, label: str, seconds: float = 120.0) -> None:
        """Wait until the instance answers `/readyz` with 200; fail if it exits first."""
        service = self.running[label]
        deadline = asyncio.get_running_loop().time() + seconds
        url = f"http://127.0.0.1:{service.http_port}/readyz"
        async with httpx.AsyncClient(timeout=2.0) as http:
            while asyncio.get_running_loop().time() < deadline:
                if service.process.returncode is not None:
                    raise InfraError(
                        f"service {service.label} exited with code {service.process.returncode} "
                        "during start-up (its output is above)"
                    )
                try:
                    if (await http.get(url)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise InfraError(f"service {service.label} was not ready after {seconds:.0f}s")

    def exited(self) -> dict[str, int]:
        """Instances that stopped on their own, with their exit codes."""
        return {
            label: s.process.returncode
            for label, s in self.running.items()
            if s.process.returncode is not None
        }

    async def kill(self, label: str) -> None:
        """`kill -9` one instance (no chance to finish anything) and forget it."""
        service = self.running.pop(label)
        if service.process.returncode is None:
            service.process.kill()
        await service.process.wait()
        await service.pump

    async def terminate(self, label: str, grace_seconds: float = 20.0) -> None:
        """Stop one instance the orderly way (SIGTERM, SIGKILL after the grace) and forget it."""
        service = self.running.pop(label)
        if service.process.returncode is None:
            service.process.send_signal(signal.SIGTERM)
        await self._reap(service, grace_seconds)

    async def stop(self, grace_seconds: float = 20.0) -> None:
        services = list(self.running.values())
        self.running.clear()
        for service in services:
            if service.process.returncode is None:
                service.process.send_signal(signal.SIGTERM)
        for service in services:
            await self._reap(service, grace_seconds)

    @staticmethod
    async def _reap(service: ServiceProcess, grace_seconds: float) -> None:
        try:
            await asyncio.wait_for(service.process.wait(), grace_seconds)
        except TimeoutError:
            service.process.kill()
            await service.process.wait()
        await service.pump

    async def __aenter__(self) -> ServiceProcesses:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
