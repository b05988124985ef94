"""A small HTTP/1.1 server on loopback (Trio + h11) for the provider stand-ins.

Written against h11 directly rather than ASGI so a stand-in can do what real providers
sometimes do and an ASGI app cannot: take a request and then drop the connection without
answering, or answer only after the client has given up.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

MAX_BODY = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the stand-in saw it."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (ValueError when it is not)."""
        return json.loads(self.body.decode("utf-8"))


@dataclass(slots=True)
class Response:
    """What to answer: status, headers and a JSON (or raw) body; `delay` sleeps first."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encode(self) -> bytes:
        """The body bytes (JSON unless already bytes)."""
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode("utf-8")


class Drop:
    """Answer nothing and close the connection (after `delay` seconds)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay


Handler = Callable[[Request], Awaitable[Response | Drop]]


class LoopbackHttpServer:
    """Serves one handler on 127.0.0.1 at an ephemeral port until its nursery is cancelled."""

    def __init__(self, handler: Handler, *, name: str = "standin") -> None:
        self.handler = handler
        self.name = name
        self.port = 0

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve; `await nursery.start(server.serve)` returns the base URL."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.base_url)
            await trio.serve_listeners(self._connection, listeners, handler_nursery=nursery)

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_BODY)
        try:
            while True:
                event = await self._next(conn, stream)
                if not isinstance(event, h11.Request):
                    return
                chunks: list[bytes] = []
                while True:
                    part = await self._next(conn, stream)
                    if isinstance(part, h11.Data):
                        chunks.append(bytes(part.data))
                    elif isinstance(part, h11.EndOfMessage):
                        break
                    else:
                        return
                target = urllib.parse.urlsplit(event.target.decode("ascii"))
                request = Request(
                    method=event.method.decode("ascii"),
                    path=target.path,
                    query=urllib.parse.parse_qs(target.query),
                    headers={k.decode().lower(): v.decode("latin-1") for k, v in event.headers},
                    body=b"".join(chunks),
                )
                answer = await self.handler(request)
                if answer.delay:
                    await trio.sleep(answer.delay)
                if isinstance(answer, Drop):
                    await stream.aclose()
                    return
                body = answer.encode()
                headers = [
                    ("content-length", str(len(body))),
                    *(
                        [("content-type", "application/json")]
                        if body and not isinstance(answer.body, bytes)
                        else []
                    ),
                    *answer.headers.items(),
                ]
                await stream.send_all(
                    conn.send(h11.Response(status_code=answer.status, headers=headers)) or b""
                )
                if body:
                    await stream.send_all(conn.send(h11.Data(data=body)) or b"")
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    await stream.aclose()
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return

    @staticmethod
    async def _next(conn: h11.Connection, stream: trio.SocketStream) -> Any:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            return event


class LoopbackService:
    """A stand-in served on loopback: mixed into a dataclass with a `handle` method, it
    makes the server (named by `service_name`), gives its URL and runs it."""

    service_name = "standin"
    handle: Handler

    def __post_init__(self) -> None:
        self.server = LoopbackHttpServer(self.handle, name=self.service_name)

    @property
    def base_url(self) -> str:
        """Where the stand-in listens (after `serve` has started)."""
        return self.server.base_url

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `await nursery.start(standin.serve)` returns the base URL."""
        await self.server.serve(task_status=task_status)
