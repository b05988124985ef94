"""Serve the ASGI app with Hypercorn on Trio, inside the caller's nursery, beside the engine."""

from __future__ import annotations

import socket

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from cadence.adapters.config import ConfigError
from cadence.adapters.web.app import ServiceApp


def check_bind(bind: str) -> None:
    """Raise `ConfigError` naming `bind` when nothing can listen there (a port out of range,
    a host that does not resolve, an address in use), before the service starts: the
    server's own failure comes out of its task groups as a page of nested tracebacks."""
    config = Config()
    config.bind = [bind]
    try:
        sockets = config.create_sockets()
    except (OSError, OverflowError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if not isinstance(exc, OSError) or isinstance(exc, socket.gaierror):
            reason += " (expected HOST:PORT, such as 0.0.0.0:8080)"
        raise ConfigError(f"--http {bind}: cannot listen there: {reason}") from None
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.close()


async def serve_http(
    app: ServiceApp,
    bind: str,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on `bind` (HOST:PORT; port 0 picks one) until cancelled.

    Started with `nursery.start`, it reports the addresses it listens on once they are
    bound. Cancelling it (as SIGINT/SIGTERM do in `cadence serve`) stops accepting and ends
    the open requests; each request's engine call is one transaction, so none is left
    half-written.
    """
    config = Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = "-"
    # Hypercorn's own graceful period; the engine stops between batches anyway.
    config.graceful_timeout = 5.0
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]
