"""What a provider reports back, in one shape whatever the provider, and how bad bodies fail.

A parser turns one webhook body into `ProviderReport`s without touching the store: each
names the send it concerns the ways the provider allows (its message id, the outbox id
Cadence handed over), what became of it (the send-log outcome) and the Cadence events it
means for the contact. Matching them to sends and contacts is the engine's part
(`cadence.engine.inbound`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cadence.engine.clock import read_instant
from cadence.errors import CadenceError


@dataclass(frozen=True)
class WebhookProblem:
    """One thing wrong with a webhook body: where (a JSON path) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        """`results[2].status.groupName: expected a string, got number`."""
        return f"{self.path}: {self.reason}"


class InvalidWebhook(CadenceError):
    """A webhook body rejected as a whole: nothing was written. Lists every problem found."""

    def __init__(self, provider: str, problems: list[WebhookProblem]) -> None:
        """Keep the problems; the message lists the first few."""
        self.provider = provider
        self.problems = problems
        shown = "\n".join(str(problem) for problem in problems[:20])
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(
            f"{provider} webhook: {len(problems)} problem(s), nothing written:\n{shown}{more}"
        )


@dataclass(frozen=True)
class ProviderReport:
    """One report about one message, sent by Cadence (a status) or by the person (a reply).

    `events` are (name, properties) pairs for the contact; `outcome` is the send-log entry
    for a report about a send (None for an inbound message). `dedupe` is the same for the
    same report delivered twice, and differs between reports that differ.
    """

    provider: str
    position: str
    kind: str
    at: dt.datetime
    dedupe: str
    outcome: str | None = None
    events: tuple[tuple[str, dict[str, Any]], ...] = ()
    channel: str | None = None
    provider_message_id: str | None = None
    # What Cadence handed the provider to find the send again (X-Mailin-custom, callbackData).
    outbox_ref: str | None = None
    send_key: str | None = None
    tenant: str | None = None
    # The address the provider names: the recipient of a send, the sender of a reply.
    address: str | None = None
    inbound: bool = False
    # The provider message id of the send a reply answers, when it says (an email's
    # In-Reply-To header): it names the send, and so the contact, better than the address.
    answers: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # What the provider says the message cost (Infobip's price), when it says.
    cost: Decimal | None = None
    currency: str | None = None


def dedupe_key(provider: str, *parts: Any) -> str:
    """A deterministic id for a report: the provider and a digest of what identifies it."""
    text = json.dumps([str(part) if part is not None else None for part in parts])
    return f"webhook:{provider}:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:40]}"


class Fields:
    """Typed reads of one JSON object that collect problems instead of raising at the first."""

    def __init__(self, data: Mapping[str, Any], path: str, problems: list[WebhookProblem]) -> None:
        """Read `data`, found at `path`; problems go to the shared list."""
        self.data = data
        self.path = path
        self.problems = problems

    def at(self, name: str) -> str:
        """The JSON path of a field of this object."""
        return f"{self.path}.{name}" if self.path else name

    def problem(self, name: str | None, reason: str) -> None:
        """Note a problem with a field (or with the whole object when `name` is None)."""
        self.problems.append(WebhookProblem(self.at(name) if name else self.path or "$", reason))

    def text(self, name: str, *, required: bool = False, number: bool = False) -> str | None:
        """A string field; with `number`, an integer too, as its text (an id or a number
        that providers write either way)."""
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                self.problem(name, "missing")
            return None
        if isinstance(value, str):
            return value
        if number and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        self.problem(name, f"expected a string, got {json_kind(value)}")
        return None

    def number(self, name: str) -> int | float | None:
        """A numeric field (a string of digits is accepted)."""
        value = self.data.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            self.problem(name, "expected a number, got boolean")
            return None
        if isinstance(value, int | float):
            return value
        if isinstance(value, str):
            try:
                return float(value) if "." in value else int(value)
            except ValueError:
                pass
        self.problem(name, f"expected a number, got {json_kind(value)} {value!r}")
        return None

    def obj(self, name: str, *, required: bool = False) -> Fields | None:
        """A nested object field, as `Fields`."""
        value = self.data.get(name)
        if value is None:
            if required:
                self.problem(name, "missing")
            return None
        if not isinstance(value, Mapping):
            self.problem(name, f"expected an object, got {json_kind(value)}")
            return None
        return Fields(value, self.at(name), self.problems)

    def moment(self, name: str) -> dt.datetime | None:
        """An ISO-8601 date-time field (Infobip writes `2019-11-09T16:00:00.000+0000`)."""
        value = self.text(name)
        if value is None:
            return None
        parsed = read_instant(value)
        if parsed is None:
            self.problem(name, f"{value!r} is not a date-time")
        return parsed


def json_kind(value: Any) -> str:
    """A JSON name for a Python value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__
