"""A request read whole and the response to it: what the service's handlers take and give."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cadence.engine.store.database import NotJsonNumber, loads_json


@dataclass(frozen=True)
class Request:
    """One HTTP request, read whole: method, path, query, headers (lower-case), body."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""

    def param(self, name: str) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class Response:
    """What goes back: status, body, content type and any other headers."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: Any) -> Response:
        """A JSON answer."""
        return cls(status, json.dumps(data, default=str).encode(), "application/json")

    @classmethod
    def html(cls, status: int, text: str) -> Response:
        """An HTML page, never cached (it speaks of one person's subscription)."""
        return cls(status, text.encode(), "text/html; charset=utf-8", {"cache-control": "no-store"})


def json_body(body: bytes) -> tuple[Any, str | None]:
    """The body as JSON, or why it is not."""
    if not body.strip():
        return None, "the body is empty; expected JSON"
    try:
        return loads_json(body), None
    except NotJsonNumber as exc:
        return None, f"not JSON: {exc}"
    except UnicodeDecodeError as exc:
        return None, f"the body is not UTF-8 ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    except RecursionError:
        # `[[[[...` thousands deep exhausts the decoder's stack: the body's fault, not ours.
        return None, "the JSON is nested too deeply"
