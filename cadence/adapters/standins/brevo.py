"""A loopback stand-in for Brevo's transactional email API (`POST /v3/smtp/email`).

It checks each request the way Brevo documents it (api-key header; sender; `to` or
`messageVersions` with at most 1000 versions, 99 recipients each and 2000 in all;
subject and content unless a templateId; `headers.idempotencyKey` a UUID; valid
addresses), answers Brevo's shapes (201 with `messageId` or `messageIds`; 400/401 as
`{"code", "message"}`; 429 with `x-sib-ratelimit-*` headers and no Retry-After), and
records every delivered email for tests and the demo.

Idempotency as Brevo documents it
(https://developers.brevo.com/docs/heterogenous-versions-batch-emails): a key is processed
once within its TTL (30 minutes); a later request with the same key is not processed and
is refused with 400 `duplicate_parameter`. It does not replay the first answer.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from cadence.adapters.standins.faults import Fault, Faults
from cadence.adapters.standins.http import Drop, LoopbackService, Request, Response

MAX_VERSIONS = 1000
MAX_RECIPIENTS_PER_VERSION = 99
MAX_RECIPIENTS = 2000
MAX_NAME = 70  # sender, recipient and reply-to names (Brevo's SendSmtpEmail* models)
_EMAIL = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")
_TOP_LEVEL = frozenset(
    {
        "sender", "to", "bcc", "cc", "htmlContent", "textContent", "subject", "replyTo",
        "attachment", "headers", "templateId", "params", "messageVersions", "tags",
        "scheduledAt", "batchId",
    }
)  # fmt: skip
_VERSION_KEYS = frozenset(
    {"to", "params", "bcc", "cc", "replyTo", "subject", "htmlContent", "textContent"}
)


class BrevoRequestError(Exception):
    """A request Brevo would refuse with 400."""

    def __init__(self, message: str, code: str = "invalid_parameter") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class BrevoEmail:
    """One email as Brevo would deliver it to one recipient."""

    message_id: str
    to: str
    to_name: str | None
    sender: str
    subject: str
    html: str | None
    text: str | None
    reply_to: str | None
    tags: tuple[str, ...]
    headers: dict[str, Any]
    idempotency_key: str | None


@dataclass
class BrevoStandin(LoopbackService):
    """Brevo on loopback: start with `await nursery.start(standin.serve)`."""

    api_keys: set[str] = field(default_factory=lambda: {"test-brevo-key"})
    faults: Faults = field(default_factory=Faults)
    requests: list[Request] = field(default_factory=list)
    emails: list[BrevoEmail] = field(default_factory=list)
    rate_limit: int = 100
    idempotency_ttl: float = 30 * 60.0
    _seen: dict[str, float] = field(default_factory=dict)
    _counter: int = 0

    service_name = "brevo"

    # ------------------------------------------------------------------ handling

    async def handle(self, request: Request) -> Response | Drop:
        """Route, check credentials and faults, validate, deliver."""
        self.requests.append(request)
        if request.path != "/v3/smtp/email" or request.method != "POST":
            return Response(404, {"code": "not_found", "message": "Invalid route"})
        fault = self.faults.take()
        if fault is not None and not fault.process and fault.kind != "slow":
            return self._fail(fault)
        if request.headers.get("api-key") not in self.api_keys:
            return Response(401, {"code": "unauthorized", "message": "Key not found"})
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            return Response(
                400, {"code": "bad_request", "message": "Input must be a valid JSON object"}
            )
        try:
            answer = self._send(body)
        except BrevoRequestError as exc:
            return Response(400, {"code": exc.code, "message": str(exc)})
        if fault is not None and fault.kind == "slow":
            return Response(201, answer, headers=self._limit_headers(), delay=fault.delay or 30.0)
        if fault is not None:
            return self._fail(fault)
        return Response(201, answer, headers=self._limit_headers())

    def _fail(self, fault: Fault) -> Response | Drop:
        if fault.kind == "429":
            reset = fault.reset if fault.reset is not None else 1
            return Response(
                429,
                {"code": "too_many_requests", "message": "The expected rate limit is exceeded."},
                headers={
                    "x-sib-ratelimit-limit": str(self.rate_limit),
                    "x-sib-ratelimit-remaining": "0",
                    "x-sib-ratelimit-reset": str(reset),
                },
            )
        if fault.kind in ("500", "503"):
            return Response(
                int(fault.kind), {"code": "internal_error", "message": "Internal error"}
            )
        if fault.kind == "401":
            return Response(401, {"code": "unauthorized", "message": "Key not found"})
        if fault.kind == "no_credits":
            return Response(402, {"code": "not_enough_credits",
                                  "message": "You don't have enough credit to send"})  # fmt: skip
        return Drop(fault.delay)

    def _limit_headers(self) -> dict[str, str]:
        return {
            "x-sib-ratelimit-limit": str(self.rate_limit),
            "x-sib-ratelimit-remaining": str(self.rate_limit - 1),
            "x-sib-ratelimit-reset": "1",
        }

    # ------------------------------------------------------------------ validation

    def _send(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise BrevoRequestError("Input must be a valid JSON object", "bad_request")
        unknown = sorted(set(body) - _TOP_LEVEL)
        if unknown:
            raise BrevoRequestError(f"{unknown[0]} is not a valid parameter")
        headers = body.get("headers") or {}
        if not isinstance(headers, dict):
            raise BrevoRequestError("headers must be an object")
        key = headers.get("idempotencyKey")
        if key is not None:
            try:
                uuid.UUID(str(key))
            except ValueError:
                raise BrevoRequestError("idempotencyKey must be a valid UUID") from None
            used = self._seen.get(key)
            if used is not None and time.monotonic() - used < self.idempotency_ttl:
                raise BrevoRequestError(
                    f"idempotencyKey {key} was already used in a request processed in the last "
                    f"{self.idempotency_ttl / 60:g} minutes",
                    "duplicate_parameter",
                )
        has_template = body.get("templateId") is not None
        sender = body.get("sender")
        if not has_template:
            if not isinstance(sender, dict) or not _valid_email(sender.get("email")):
                raise BrevoRequestError("sender is missing or its email is not valid")
            _check_name(sender, "sender")
        versions = body.get("messageVersions")
        if versions is not None:
            recipients = self._check_versions(versions, body, has_template)
        else:
            recipients = [self._check_recipients(body.get("to"), "to")]
            if not has_template:
                _need_content(body, body, "")
        for name in ("cc", "bcc"):
            if body.get(name) is not None:
                self._check_recipients(body[name], name)
        tags = body.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise BrevoRequestError("tags must be an array of strings")
        if body.get("replyTo") is not None:
            _check_address(body["replyTo"], "replyTo")
        ids: list[str] = []
        for index, group in enumerate(recipients):
            version = versions[index] if versions is not None else {}
            self._counter += 1
            message_id = f"<{uuid.uuid4().hex[:20]}.{self._counter}@smtp-relay.mailin.fr>"
            ids.append(message_id)
            reply = version.get("replyTo") or body.get("replyTo")
            for address in group:
                self.emails.append(
                    BrevoEmail(
                        message_id=message_id,
                        to=address["email"],
                        to_name=address.get("name"),
                        sender=str((sender or {}).get("email", "")),
                        subject=str(version.get("subject") or body.get("subject") or ""),
                        html=version.get("htmlContent") or body.get("htmlContent"),
                        text=version.get("textContent") or body.get("textContent"),
                        reply_to=reply.get("email") if isinstance(reply, dict) else None,
                        tags=tuple(tags),
                        headers=dict(headers),
                        idempotency_key=key,
                    )
                )
        answer: dict[str, Any] = (
            {"messageIds": ids} if versions is not None else {"messageId": ids[0]}
        )
        if key is not None:
            self._seen[key] = time.monotonic()
        return answer

    def _check_versions(
        self, versions: Any, body: dict[str, Any], has_template: bool
    ) -> list[list[dict[str, Any]]]:
        if not isinstance(versions, list) or not versions:
            raise BrevoRequestError("messageVersions must be a non-empty array")
        if len(versions) > MAX_VERSIONS:
            raise BrevoRequestError(f"messageVersions can hold at most {MAX_VERSIONS} versions")
        groups: list[list[dict[str, Any]]] = []
        for index, version in enumerate(versions):
            where = f"messageVersions[{index}]"
            if not isinstance(version, dict):
                raise BrevoRequestError(f"{where} must be an object")
            unknown = sorted(set(version) - _VERSION_KEYS)
            if unknown:
                raise BrevoRequestError(f"{where}.{unknown[0]} is not a valid parameter")
            group = self._check_recipients(version.get("to"), f"{where}.to")
            if len(group) > MAX_RECIPIENTS_PER_VERSION:
                raise BrevoRequestError(
                    f"{where}.to can hold at most {MAX_RECIPIENTS_PER_VERSION} recipients"
                )
            if not has_template:
                _need_content(version, body, where + ".")
            groups.append(group)
        if sum(len(g) for g in groups) > MAX_RECIPIENTS:
            raise BrevoRequestError(f"at most {MAX_RECIPIENTS} recipients per request")
        return groups

    @staticmethod
    def _check_recipients(value: Any, where: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not value:
            raise BrevoRequestError(f"{where} is missing or empty", "missing_parameter")
        for index, item in enumerate(value):
            _check_address(item, f"{where}[{index}]")
        return value


def _valid_email(value: Any) -> bool:
    return isinstance(value, str) and bool(_EMAIL.match(value))


def _check_address(item: Any, where: str) -> None:
    if not isinstance(item, dict) or not _valid_email(item.get("email")):
        raise BrevoRequestError(f"email is not valid in {where}")
    if "name" in item and not isinstance(item["name"], str):
        raise BrevoRequestError(f"{where}.name must be a string")
    _check_name(item, where)


def _check_name(item: dict[str, Any], where: str) -> None:
    name = item.get("name")
    if isinstance(name, str) and len(name) > MAX_NAME:
        raise BrevoRequestError(f"{where}.name can be at most {MAX_NAME} characters long")


def _need_content(version: dict[str, Any], body: dict[str, Any], where: str) -> None:
    if not (version.get("subject") or body.get("subject")):
        raise BrevoRequestError(f"{where}subject is missing", "missing_parameter")
    if not (
        version.get("htmlContent")
        or version.get("textContent")
        or body.get("htmlContent")
        or body.get("textContent")
    ):
        raise BrevoRequestError(
            f"{where}htmlContent or textContent is missing", "missing_parameter"
        )
