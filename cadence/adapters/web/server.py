"""Serve the ASGI app with Hypercorn on Trio, inside the caller's nursery, beside the engine."""

from __future__ import annotations

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from cadence.adapters.web.app import ServiceApp


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
