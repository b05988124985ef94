"""A loopback stand-in for Infobip's SMS and WhatsApp APIs.

Endpoints, as Infobip publishes them: `POST /sms/2/text/advanced` (messages with
destinations, per-destination `messageId`, `bulkId`, `callbackData`), `GET /sms/1/logs`
(by `messageId` or `bulkId`), `POST /whatsapp/1/message/template`,
`POST /whatsapp/1/message/text`, and `GET /whatsapp/1/reports` for WhatsApp lookups.
Auth is `Authorization: App KEY`. Errors come in either of the two shapes Infobip
documents (https://www.infobip.com/docs/developer-resources/api-fundamentals/rate-limits-and-throttling,
https://www.infobip.com/docs/essentials/response-status-and-error-codes): the current one,
`{"errorCode", "description", "action", "violations": [{"property", "violation"}],
"resources"}`, which most endpoints answer, or the previous one that some endpoints still
answer, `{"requestError": {"serviceException": {"messageId", "text", "validationErrors"}}}`
(`error_style="current"` or `"legacy"`, the default). Infobip does not
deduplicate: a repeated messageId is delivered again, and the stand-in counts it, so
tests can prove the adapter never sends twice.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from cadence.adapters.standins.faults import Fault, Faults
from cadence.adapters.standins.http import Drop, LoopbackService, Request, Response

_NUMBER = re.compile(r"^\+?[1-9][0-9]{5,14}$")
SMS_PRICE = "0.0070"
WHATSAPP_PRICE = "0.0140"

PENDING = {
    "groupId": 1,
    "groupName": "PENDING",
    "id": 26,
    "name": "PENDING_ACCEPTED",
    "description": "Message sent to next instance",
}
REJECTED_DESTINATION = {
    "groupId": 5,
    "groupName": "REJECTED",
    "id": 51,
    "name": "REJECTED_DESTINATION",
    "description": "Invalid destination address",
}
DELIVERED = {
    "groupId": 3,
    "groupName": "DELIVERED",
    "id": 5,
    "name": "DELIVERED_TO_HANDSET",
    "description": "Message delivered to handset",
}


class InfobipRequestError(Exception):
    """A request Infobip would refuse with 400 BAD_REQUEST."""

    @property
    def field(self) -> str:
        """The request field the message names (`messages[0].text is required`)."""
        first = str(self).split(" ", 1)[0]
        return first if first[:1].islower() else ""


ErrorStyle = Literal["legacy", "current"]

_ACTIONS = {
    400: "Check the request body against the endpoint's documented model.",
    401: "Check the API key and the Authorization header.",
    404: "Check the endpoint path.",
    429: "Check request rate limit specified in the API endpoint documentation resource.",
}


def _error(
    status: int, message_id: str, text: str, style: ErrorStyle = "legacy", property_: str = ""
) -> Response:
    if style == "current":
        violations = [{"property": property_, "violation": text}] if status == 400 else []
        return Response(
            status,
            {
                "errorCode": f"E{status}",
                "description": text if status != 400 else "Request body has invalid fields.",
                "action": _ACTIONS.get(status, "Try again later."),
                "violations": violations,
                "resources": [],
            },
        )
    exception: dict[str, Any] = {"messageId": message_id, "text": text}
    if status == 400 and property_:
        exception["validationErrors"] = {property_: [text]}
    return Response(status, {"requestError": {"serviceException": exception}})


NOT_ENOUGH_CREDITS = {
    "groupId": 5,
    "groupName": "REJECTED",
    "id": 12,
    "name": "REJECTED_NOT_ENOUGH_CREDITS",
    "description": "Not enough credits",
}


def infobip_time(at: dt.datetime) -> str:
    """A time as Infobip writes it in logs and reports: `yyyy-MM-dd'T'HH:mm:ss.SSSZ`, that is
    `2019-11-09T16:00:00.000+0000` (a four-digit offset, not ISO's `+00:00`)."""
    utc = at.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


@dataclass(frozen=True, slots=True)
class InfobipMessage:
    """One message Infobip accepted (SMS or WhatsApp)."""

    channel: str
    message_id: str
    bulk_id: str | None
    to: str
    sender: str | None
    text: str | None
    template: str | None
    language: str | None
    placeholders: tuple[str, ...]
    callback_data: str | None
    sent_at: str


@dataclass
class InfobipStandin(LoopbackService):
    """Infobip on loopback: start with `await nursery.start(standin.serve)`."""

    api_keys: set[str] = field(default_factory=lambda: {"test-infobip-key"})
    faults: Faults = field(default_factory=Faults)
    requests: list[Request] = field(default_factory=list)
    messages: list[InfobipMessage] = field(default_factory=list)
    # Messages accepted, then refused for the balance (`refuse_for_credit`), by messageId.
    refused: dict[str, InfobipMessage] = field(default_factory=dict)
    error_style: ErrorStyle = "legacy"

    service_name = "infobip"

    def deliveries(self, channel: str | None = None) -> Counter[str]:
        """How many times each messageId was accepted (more than 1 is a double send)."""
        return Counter(
            m.message_id for m in self.messages if channel is None or m.channel == channel
        )

    # ------------------------------------------------------------------ handling

    async def handle(self, request: Request) -> Response | Drop:
        """Route, check credentials and faults, validate, accept."""
        self.requests.append(request)
        routes = {
            ("POST", "/sms/2/text/advanced"): self._sms,
            ("POST", "/whatsapp/1/message/template"): self._whatsapp_template,
            ("POST", "/whatsapp/1/message/text"): self._whatsapp_text,
        }
        lookups = {"/sms/1/logs": "sms", "/whatsapp/1/reports": "whatsapp"}
        route = routes.get((request.method, request.path))
        if route is None and not (request.method == "GET" and request.path in lookups):
            return self._error(404, "NOT_FOUND", "Requested URL not found: " + request.path)
        fault = self.faults.take()
        if fault is not None and fault.kind == "no_credits":
            # The balance is spent: each message of a send is rejected, none is taken (a
            # lookup still answers).
            if route is None:
                fault = None
            else:
                return Response(200, {"messages": self._rejected_for_credit(request)})
        if fault is not None and not fault.process and fault.kind != "slow":
            return self._fail(fault)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("App ") or auth[4:] not in self.api_keys:
            return self._error(401, "UNAUTHORIZED", "Invalid login details")
        if route is None:
            return self._lookup(request, lookups[request.path])
        try:
            body = request.json()
            if not isinstance(body, dict):
                raise InfobipRequestError("Request body must be a JSON object")
            answer = route(body)
        except (ValueError, UnicodeDecodeError):
            return self._error(400, "BAD_REQUEST", "Invalid JSON")
        except InfobipRequestError as exc:
            return self._error(400, "BAD_REQUEST", str(exc), exc.field)
        if fault is not None and fault.kind == "slow":
            return Response(200, answer, delay=fault.delay or 30.0)
        if fault is not None:
            return self._fail(fault)
        return Response(200, answer)

    def _rejected_for_credit(self, request: Request) -> list[dict[str, Any]]:
        """One REJECTED_NOT_ENOUGH_CREDITS entry per recipient of a send request (SMS
        destinations, WhatsApp messages, or the one WhatsApp text), each kept in `refused`:
        Infobip logs a message it refused, so a lookup of its messageId finds the refusal."""
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            return []
        channel = "sms" if request.path.startswith("/sms/") else "whatsapp"
        found: list[dict[str, Any]] = []
        for message in body.get("messages", [body]) if isinstance(body, dict) else []:
            if not isinstance(message, dict):
                continue
            for dest in message.get("destinations", [message]):
                if not isinstance(dest, dict) or not isinstance(dest.get("to"), str):
                    continue
                message_id = dest.get("messageId") or uuid.uuid4().hex
                content = message.get("content")
                content = content if isinstance(content, dict) else {}
                self.refused[message_id] = InfobipMessage(
                    channel=channel, message_id=message_id, bulk_id=body.get("bulkId"),
                    to=dest["to"], sender=message.get("from"),
                    text=message.get("text") or content.get("text"), template=None,
                    language=None, placeholders=(), callback_data=message.get("callbackData"),
                    sent_at=infobip_time(dt.datetime.now(dt.UTC)),
                )  # fmt: skip
                found.append({"to": dest["to"], "status": NOT_ENOUGH_CREDITS,
                              "messageId": message_id})  # fmt: skip
        return found

    def _fail(self, fault: Fault) -> Response | Drop:
        if fault.kind == "429":
            answer = self._error(429, "TOO_MANY_REQUESTS", "Too many requests sent.")
            if fault.retry_after is not None:
                answer.headers["retry-after"] = f"{fault.retry_after:g}"
            return answer
        if fault.kind in ("500", "503"):
            return self._error(int(fault.kind), "GENERAL_ERROR", "Something went wrong")
        if fault.kind == "401":
            return self._error(401, "UNAUTHORIZED", "Invalid login details")
        return Drop(fault.delay)

    def _error(self, status: int, message_id: str, text: str, property_: str = "") -> Response:
        return _error(status, message_id, text, self.error_style, property_)

    def _accept(self, **fields: Any) -> InfobipMessage:
        message = InfobipMessage(sent_at=infobip_time(dt.datetime.now(dt.UTC)), **fields)
        self.refused.pop(message.message_id, None)
        self.messages.append(message)
        return message

    # ------------------------------------------------------------------ SMS

    def _sms(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InfobipRequestError("messages must be a non-empty array")
        bulk_id = body.get("bulkId")
        if bulk_id is not None and not isinstance(bulk_id, str):
            raise InfobipRequestError("bulkId must be a string")
        checked: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        for index, message in enumerate(messages):
            where = f"messages[{index}]"
            if not isinstance(message, dict):
                raise InfobipRequestError(f"{where} must be an object")
            destinations = message.get("destinations")
            if not isinstance(destinations, list) or not destinations:
                raise InfobipRequestError(f"{where}.destinations must be a non-empty array")
            for d_index, dest in enumerate(destinations):
                if not isinstance(dest, dict) or not isinstance(dest.get("to"), str):
                    raise InfobipRequestError(f"{where}.destinations[{d_index}].to is required")
            if not isinstance(message.get("text"), str):
                raise InfobipRequestError(f"{where}.text is required")
            for name in ("from", "callbackData", "notifyUrl"):
                if name in message and not isinstance(message[name], str):
                    raise InfobipRequestError(f"{where}.{name} must be a string")
            if len(message.get("callbackData", "")) > 4000:
                raise InfobipRequestError(f"{where}.callbackData is longer than 4000 characters")
            checked.append((message, destinations))
        out: list[dict[str, Any]] = []
        for message, destinations in checked:
            for dest in destinations:
                message_id = dest.get("messageId") or uuid.uuid4().hex
                if not _NUMBER.match(dest["to"]):
                    out.append(
                        {"to": dest["to"], "status": REJECTED_DESTINATION, "messageId": message_id}
                    )
                    continue
                self._accept(
                    channel="sms",
                    message_id=message_id,
                    bulk_id=bulk_id,
                    to=dest["to"],
                    sender=message.get("from"),
                    text=message["text"],
                    template=None,
                    language=None,
                    placeholders=(),
                    callback_data=message.get("callbackData"),
                )
                out.append({"to": dest["to"], "status": PENDING, "messageId": message_id})
        answer: dict[str, Any] = {"messages": out}
        if bulk_id is not None:
            answer["bulkId"] = bulk_id
        return answer

    # ------------------------------------------------------------------ WhatsApp

    def _whatsapp_template(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InfobipRequestError("messages must be a non-empty array")
        for index, message in enumerate(messages):
            where = f"messages[{index}]"
            if not isinstance(message, dict):
                raise InfobipRequestError(f"{where} must be an object")
            for name in ("from", "to"):
                if not isinstance(message.get(name), str) or not message[name]:
                    raise InfobipRequestError(f"{where}.{name} is required")
            content = message.get("content")
            if not isinstance(content, dict):
                raise InfobipRequestError(f"{where}.content is required")
            if not isinstance(content.get("templateName"), str) or not content["templateName"]:
                raise InfobipRequestError(f"{where}.content.templateName is required")
            if not isinstance(content.get("language"), str) or not content["language"]:
                raise InfobipRequestError(f"{where}.content.language is required")
            data = content.get("templateData")
            if not isinstance(data, dict) or not isinstance(data.get("body"), dict):
                raise InfobipRequestError(f"{where}.content.templateData.body is required")
            placeholders = data["body"].get("placeholders")
            if not isinstance(placeholders, list) or not all(
                isinstance(p, str) and p for p in placeholders
            ):
                raise InfobipRequestError(
                    f"{where}.content.templateData.body.placeholders must be non-empty strings"
                )
        out = []
        for message in messages:
            message_id = message.get("messageId") or uuid.uuid4().hex
            if not _NUMBER.match(message["to"]):
                out.append(
                    {
                        "to": message["to"],
                        "messageCount": 0,
                        "messageId": message_id,
                        "status": REJECTED_DESTINATION,
                    }
                )
                continue
            content = message["content"]
            self._accept(
                channel="whatsapp",
                message_id=message_id,
                bulk_id=body.get("bulkId"),
                to=message["to"],
                sender=message["from"],
                text=None,
                template=content["templateName"],
                language=content["language"],
                placeholders=tuple(content["templateData"]["body"]["placeholders"]),
                callback_data=message.get("callbackData"),
            )
            out.append(
                {"to": message["to"], "messageCount": 1, "messageId": message_id, "status": PENDING}
            )
        answer: dict[str, Any] = {"messages": out}
        if body.get("bulkId") is not None:
            answer["bulkId"] = body["bulkId"]
        return answer

    def _whatsapp_text(self, body: dict[str, Any]) -> dict[str, Any]:
        for name in ("from", "to"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise InfobipRequestError(f"{name} is required")
        content = body.get("content")
        if not isinstance(content, dict) or not isinstance(content.get("text"), str):
            raise InfobipRequestError("content.text is required")
        if not 1 <= len(content["text"]) <= 4096:
            raise InfobipRequestError("content.text must be 1 to 4096 characters")
        message_id = body.get("messageId") or uuid.uuid4().hex
        if not _NUMBER.match(body["to"]):
            return {
                "to": body["to"],
                "messageCount": 0,
                "messageId": message_id,
                "status": REJECTED_DESTINATION,
            }
        self._accept(
            channel="whatsapp",
            message_id=message_id,
            bulk_id=None,
            to=body["to"],
            sender=body["from"],
            text=content["text"],
            template=None,
            language=None,
            placeholders=(),
            callback_data=body.get("callbackData"),
        )
        return {"to": body["to"], "messageCount": 1, "messageId": message_id, "status": PENDING}

    # ------------------------------------------------------------------ lookups

    def _lookup(self, request: Request, channel: str) -> Response:
        wanted_ids = set(request.query.get("messageId", []))
        wanted_bulks = set(request.query.get("bulkId", []))
        known = [(m, DELIVERED) for m in self.messages]
        known += [(m, NOT_ENOUGH_CREDITS) for m in self.refused.values()]
        results = [
            _report(message, status)
            for message, status in known
            if message.channel == channel
            and (not wanted_ids or message.message_id in wanted_ids)
            and (not wanted_bulks or message.bulk_id in wanted_bulks)
        ]
        return Response(200, {"results": results})

    # ------------------------------------------------------------------ reports

    def refuse_for_credit(self, message_id: str) -> dict[str, Any]:
        """The account's balance ran out before a message it accepted went out: Infobip
        drops it and reports it REJECTED_NOT_ENOUGH_CREDITS (group REJECTED, id 12). Returns
        the delivery report entry Infobip posts to the notifyUrl; lookups answer that status
        until the message is sent again."""
        dropped = [m for m in self.messages if m.message_id == message_id]
        if not dropped:
            raise KeyError(f"no accepted message {message_id!r}")
        self.messages = [m for m in self.messages if m.message_id != message_id]
        self.refused[message_id] = dropped[-1]
        entry = _report(dropped[-1], NOT_ENOUGH_CREDITS)
        # A delivery report carries what the send handed over, not the message's text.
        del entry["from"], entry["text"]
        done = infobip_time(dt.datetime.now(dt.UTC))
        return {**entry, "doneAt": done, "callbackData": dropped[-1].callback_data}


def _report(message: InfobipMessage, status: dict[str, Any]) -> dict[str, Any]:
    """A message's entry as Infobip writes it in its logs (and, less `from` and `text`, in
    its delivery reports): `price` per part (nothing for a message it did not send),
    `smsCount` or WhatsApp's `messageCount`, and an `error` object, NO_ERROR when none."""
    sent = status["groupName"] != "REJECTED"
    price = (SMS_PRICE if message.channel == "sms" else WHATSAPP_PRICE) if sent else "0"
    entry: dict[str, Any] = {
        "bulkId": message.bulk_id,
        "messageId": message.message_id,
        "to": message.to,
        "from": message.sender,
        "text": message.text,
        "sentAt": message.sent_at,
        "doneAt": message.sent_at,
        "smsCount" if message.channel == "sms" else "messageCount": 1 if sent else 0,
        "price": {"pricePerMessage": float(price), "currency": "EUR"},
        "status": status,
        "error": {
            "groupId": 0,
            "groupName": "OK",
            "id": 0,
            "name": "NO_ERROR",
            "description": "No Error",
            "permanent": False,
        },
    }
    if message.channel == "whatsapp":
        entry["channel"] = "WHATSAPP"
    return entry
