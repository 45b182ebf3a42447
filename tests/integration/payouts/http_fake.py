"""A minimal HTTP/1.1 server on 127.0.0.1 for the rails' fake servers: JSON bodies, keep-alive,
answers that can be held back (`stall`) after the request was executed, as a rail that
times out after paying does, every answer `latency` seconds after its request, as a real
rail's, and a server that goes down (`down`: connections refused, open ones dropped) and
comes back on the same port (`up`), as a rail in an outage does."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Self

Answer = tuple[int, Any, dict[str, str]]


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it was read

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class FakeHttpServer:
    """Subclasses answer `handle(request)`; `stall_next(seconds)` executes the next request
    but answers it only after `seconds` (the client has timed out by then). `under_way` counts
    the requests read and not yet answered (`most_under_way`: the most at once)."""

    port: int = 0
    latency: float = 0.0
    requests: list[Request] = field(default_factory=list)
    under_way: int = 0
    most_under_way: int = 0
    _stalls: list[float] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _open: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stall_next(self, seconds: float) -> None:
        self._stalls.append(seconds)

    def handle(self, request: Request) -> Answer:
        raise NotImplementedError

    @property
    def is_up(self) -> bool:
        return self._server is not None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @asynccontextmanager
    async def in_own_process(self) -> AsyncIterator[Self]:
        """Serve from a process of its own, as a rail on another host does: what the caller
        is busy with (producing a burst, decoding what comes back) then holds back neither
        the answers nor the times noted of the requests. Meanwhile this object only knows the
        port; on leaving, it takes the served copy's state (requests, counts, what a
        subclass keeps). Request times are `time.monotonic()`, one clock for all processes."""
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_serve_in_process, args=(self, theirs), daemon=True)
        loop = asyncio.get_running_loop()
        process.start()
        try:
            self.port = await loop.run_in_executor(None, ours.recv)
            yield self
        finally:
            ours.send("stop")
            state = await loop.run_in_executor(None, ours.recv)
            await loop.run_in_executor(None, process.join)
            vars(self).update(state)

    async def down(self) -> None:
        """Refuse connections (nothing listens on the port) and drop the open ones."""
        server, self._server = self._server, None
        assert server is not None
        server.close()
        for writer in list(self._open):
            writer.close()
        await server.wait_closed()

    async def up(self) -> None:
        """Listen again, on the same port."""
        await self.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                method, target, _ = request_line.decode().split(" ", 2)
                path, _, query = target.partition("?")
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, value = line.decode().split(":", 1)
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, query, headers, body)
                self.requests.append(request)
                self.under_way += 1
                self.most_under_way = max(self.most_under_way, self.under_way)
                try:
                    await self._answer(writer, request)
                finally:
                    self.under_way -= 1
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, request: Request) -> None:
        status, payload, extra = self.handle(request)
        if self._stalls:
            await asyncio.sleep(self._stalls.pop(0))
        elif self.latency:
            await asyncio.sleep(self.latency)
        data = json.dumps(payload).encode()
        head = [
            f"HTTP/1.1 {status} X",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
        ]
        head += [f"{k}: {v}" for k, v in extra.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await writer.drain()


def _serve_in_process(server: FakeHttpServer, caller: Connection) -> None:
    asyncio.run(_serve_until_told(server, caller))


async def _serve_until_told(server: FakeHttpServer, caller: Connection) -> None:
    await server.start()
    caller.send(server.port)
    await asyncio.get_running_loop().run_in_executor(None, caller.recv)
    await server.stop()
    caller.send({name: value for name, value in vars(server).items() if name[0] != "_"})
