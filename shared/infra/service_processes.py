"""The services as separate OS processes (`python -m services.<name>`), for `creatorflow up`
and the demo: labelled output, readiness through `/readyz`, no orphans."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import httpx

from shared.infra.process import InfraError, die_with_parent, free_port

SERVICES = ("matching", "tracking", "payouts")

LineSink = Callable[[str, str], None]


def available_services() -> list[str]:
    """The services whose package can be run with `python -m` in this checkout."""
    return [s for s in SERVICES if importlib.util.find_spec(f"services.{s}.__main__") is not None]


@dataclass
class ServiceProcess:
    name: str
    process: asyncio.subprocess.Process
    http_port: int
    pump: asyncio.Task[None]


@dataclass
class ServiceProcesses:
    """Starts each named service with `env` (server URLs) and forwards its output lines to
    `sink(name, line)`; an async context manager that stops them (SIGTERM, then SIGKILL)."""

    names: Sequence[str]
    env: Mapping[str, str]
    sink: LineSink
    running: dict[str, ServiceProcess] = field(default_factory=dict)

    async def start(self, *, ready_seconds: float = 120.0) -> None:
        for name in self.names:
            port = free_port()
            env = {**os.environ, **self.env, "HTTP_PORT": str(port), "PYTHONUNBUFFERED": "1"}
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
            pump = asyncio.create_task(self._pump(name, process))
            self.running[name] = ServiceProcess(name, process, port, pump)
        await asyncio.gather(*(self._wait_ready(s, ready_seconds) for s in self.running.values()))

    async def _pump(self, name: str, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            self.sink(name, line.decode("utf-8", "replace").rstrip())

    async def _wait_ready(self, service: ServiceProcess, seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        url = f"http://127.0.0.1:{service.http_port}/readyz"
        async with httpx.AsyncClient(timeout=2.0) as http:
            while asyncio.get_running_loop().time() < deadline:
                if service.process.returncode is not None:
                    raise InfraError(
                        f"service {service.name} exited with code {service.process.returncode} "
                        "during start-up (its output is above)"
                    )
                try:
                    if (await http.get(url)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise InfraError(f"service {service.name} was not ready after {seconds:.0f}s")

    def exited(self) -> dict[str, int]:
        """Services that stopped on their own, with their exit codes."""
        return {
            name: s.process.returncode
            for name, s in self.running.items()
            if s.process.returncode is not None
        }

    async def stop(self, grace_seconds: float = 20.0) -> None:
        for service in self.running.values():
            if service.process.returncode is None:
                service.process.send_signal(signal.SIGTERM)
        for service in self.running.values():
            try:
                await asyncio.wait_for(service.process.wait(), grace_seconds)
            except TimeoutError:
                service.process.kill()
                await service.process.wait()
            await service.pump
        self.running.clear()

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
