"""SMS and WhatsApp through Infobip, exactly once although Infobip has no idempotency key.

Every destination gets a `messageId` derived from the send's idempotency key and each
request a `bulkId` derived from its messages' keys; `callbackData` carries the outbox id
and tenant so delivery reports can be matched back. Infobip deduplicates nothing, so
when an attempt's outcome is unknown (timeout, connection lost after the request went
out), or a message was tried before (`attempt` > 0), the adapter first looks the
messageId up (`GET /sms/1/logs?messageId=`, `GET /whatsapp/1/reports?messageId=`) and
sends again only what Infobip does not have.

SMS: `POST /sms/2/text/advanced`, batched. WhatsApp: free-form text
(`POST /whatsapp/1/message/text`) only inside the 24h customer-service window, else the
approved template (`POST /whatsapp/1/message/template`); neither is a permanent failure.
A batch Infobip refuses with 400 (it validates the whole request, so one message's bad
field refuses all) is sent again message by message: only the bad one fails.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import trio

from cadence.adapters.base import (
    ADDRESS_REJECTED,
    KEY_REFUSED,
    NO_CREDITS,
    Attempt,
    HttpAdapter,
    Transient,
    held_for_account,
    ordered,
)
from cadence.adapters.config import InfobipConfig
from cadence.adapters.http import (
    is_transient_status,
    provider_error,
    transient_status,
    transport_failure,
)
from cadence.adapters.message import Channel, OutboundMessage, SendResult, batch_uuid
from cadence.adapters.render import SmsContent, WhatsAppContent
from cadence.adapters.retry import CircuitBreaker, RetryPolicy

SMS_PATH = "/sms/2/text/advanced"
SMS_LOOKUP_PATH = "/sms/1/logs"
WHATSAPP_TEMPLATE_PATH = "/whatsapp/1/message/template"
WHATSAPP_TEXT_PATH = "/whatsapp/1/message/text"
WHATSAPP_LOOKUP_PATH = "/whatsapp/1/reports"

# Status groups Infobip uses: PENDING and DELIVERED mean it took the message.
_ACCEPTED_GROUPS = frozenset({"PENDING", "DELIVERED", "ACCEPTED"})
# Infobip validates a request as a whole: a 400 for one message's field (an empty template
# placeholder) refuses, and sends, none of them. Such a batch is tried again one by one.
_SPLIT = "batch_refused"
# Infobip's message status (group REJECTED, id 12) for a message refused because the
# account's balance cannot pay for it: nothing was sent, and nothing will be until the
# account is topped up. It comes in the send's answer or, later, in its delivery report.
NO_CREDITS_STATUS = "REJECTED_NOT_ENOUGH_CREDITS"
# Message statuses (group REJECTED) that refuse the number itself, not the account or the
# route: its prefix or length matches no operator. Every later send to it would be refused
# the same way, so, as a mailbox that does not exist, it is suppressed (a hard bounce).
NUMBER_REFUSED = frozenset({"REJECTED_PREFIX_MISSING", "REJECTED_DESTINATION"})


def _refusal_code(name: str) -> str:
    """The error code of a send Infobip refused with the status `name`."""
    return ADDRESS_REJECTED if name in NUMBER_REFUSED else name


def message_id_for(message: OutboundMessage) -> str:
    """Infobip's per-destination messageId: stable for the same send across retries."""
    return str(message.key_uuid())


def normalize_number(number: str) -> str:
    """Infobip wants international numbers without `+`, spaces or dashes."""
    return "".join(ch for ch in number if ch.isdigit())


class InfobipAdapter(HttpAdapter):
    """One tenant's Infobip account, for SMS and WhatsApp."""

    provider = "infobip"
    channels = frozenset({Channel.SMS, Channel.WHATSAPP})

    def __init__(
        self,
        config: InfobipConfig,
        *,
        client: httpx.AsyncClient | None = None,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        rng: random.Random | None = None,
        concurrency: int = 8,
    ) -> None:
        super().__init__(
            timeout=config.timeout, client=client, policy=policy, breaker=breaker, rng=rng,
            concurrency=concurrency,
        )  # fmt: skip
        self.config = config
        self.base = config.base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"InfobipAdapter(base_url={self.config.base_url!r})"

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """SMS in batches; WhatsApp text one by one, approved templates in batches; the
        requests of one call go out `concurrency` at a time."""
        results: dict[str, SendResult] = {}
        sms: list[OutboundMessage] = []
        wa_text: list[OutboundMessage] = []
        wa_template: list[OutboundMessage] = []
        for message in messages:
            content = message.content
            if message.channel is Channel.SMS and isinstance(content, SmsContent):
                sms.append(message)
            elif message.channel is Channel.WHATSAPP and isinstance(content, WhatsAppContent):
                if message.in_session_window():
                    wa_text.append(message)
                elif content.approved is not None:
                    wa_template.append(message)
                else:
                    results[message.idempotency_key] = SendResult.failed(
                        message,
                        self.provider,
                        "outside WhatsApp's 24h service window and no approved template is "
                        "set up for this template",
                        code="whatsapp_outside_window",
                    )
            else:
                results[message.idempotency_key] = SendResult.failed(
                    message,
                    self.provider,
                    "Infobip sends SMS and WhatsApp only",
                    code="invalid_message",
                )
        size = max(1, self.config.batch_size)
        jobs: list[tuple[list[OutboundMessage], Attempt, Attempt]] = []
        for start in range(0, len(sms), size):
            jobs.append((sms[start : start + size], self._sms, self._lookup_sms))
        for start in range(0, len(wa_template), size):
            chunk = wa_template[start : start + size]
            jobs.append((chunk, self._whatsapp_template, self._lookup_whatsapp))
        for message in wa_text:
            jobs.append(([message], self._whatsapp_text, self._lookup_whatsapp))
        limiter = trio.CapacityLimiter(self.concurrency)

        async def run(chunk: list[OutboundMessage], attempt: Attempt, lookup: Attempt) -> None:
            async with limiter:
                found = await self._drive(chunk, attempt, lookup)
                results.update(found)
                for message in chunk:  # one bad message must not fail its batch-mates
                    verdict = found.get(message.idempotency_key)
                    if verdict is not None and verdict.error_code == _SPLIT:
                        results.update(await self._drive([message], attempt, lookup))

        async with trio.open_nursery() as nursery:
            for job in jobs:
                nursery.start_soon(run, *job)
        return ordered(messages, results)

    # ------------------------------------------------------------------ requests

    def _callback_data(self, message: OutboundMessage) -> str:
        return json.dumps(
            {"outbox": message.outbox_id, "tenant": message.tenant, "key": message.idempotency_key},
            separators=(",", ":"),
        )[:4000]

    def sms_payload(self, messages: Sequence[OutboundMessage]) -> dict[str, Any]:
        """The `/sms/2/text/advanced` body for these messages."""
        items = []
        for message in messages:
            content = message.content
            assert isinstance(content, SmsContent)
            item: dict[str, Any] = {
                "destinations": [
                    {
                        "to": normalize_number(message.recipient),
                        "messageId": message_id_for(message),
                    }
                ],
                "from": message.sender or self.config.sms_sender,
                "text": content.text,
                "callbackData": self._callback_data(message),
            }
            if self.config.notify_url:
                item["notifyUrl"] = self.config.notify_url
            items.append(item)
        return {"bulkId": str(batch_uuid([m.idempotency_key for m in messages])), "messages": items}

    def whatsapp_template_payload(self, messages: Sequence[OutboundMessage]) -> dict[str, Any]:
        """The `/whatsapp/1/message/template` body for these messages."""
        items = []
        for message in messages:
            content = message.content
            assert isinstance(content, WhatsAppContent) and content.approved is not None
            item: dict[str, Any] = {
                "from": message.sender or self.config.whatsapp_sender or "",
                "to": normalize_number(message.recipient),
                "messageId": message_id_for(message),
                "content": {
                    "templateName": content.approved.name,
                    "templateData": {"body": {"placeholders": list(content.approved.parameters)}},
                    "language": content.approved.language,
                },
                "callbackData": self._callback_data(message),
            }
            if self.config.notify_url:
                item["notifyUrl"] = self.config.notify_url
            items.append(item)
        return {"messages": items, "bulkId": str(batch_uuid([m.idempotency_key for m in messages]))}

    def whatsapp_text_payload(self, message: OutboundMessage) -> dict[str, Any]:
        """The `/whatsapp/1/message/text` body (inside the 24h window only)."""
        content = message.content
        assert isinstance(content, WhatsAppContent)
        body: dict[str, Any] = {
            "from": message.sender or self.config.whatsapp_sender or "",
            "to": normalize_number(message.recipient),
            "messageId": message_id_for(message),
            "content": {"text": content.text},
            "callbackData": self._callback_data(message),
        }
        if self.config.notify_url:
            body["notifyUrl"] = self.config.notify_url
        return body

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response | Transient:
        try:
            return await self.client.post(
                self.base + path,
                json=body,
                headers=self._auth(),
                timeout=self.config.timeout,
            )
        except httpx.HTTPError as exc:
            return transport_failure(exc)

    def _auth(self) -> dict[str, str]:
        return {
            "Authorization": f"App {self.config.api_key.reveal()}",
            "Accept": "application/json",
        }

    async def _sms(self, messages: list[OutboundMessage]) -> dict[str, SendResult] | Transient:
        answer = await self._post(SMS_PATH, self.sms_payload(messages))
        return self._verdicts(messages, answer)

    async def _whatsapp_template(
        self, messages: list[OutboundMessage]
    ) -> dict[str, SendResult] | Transient:
        answer = await self._post(WHATSAPP_TEMPLATE_PATH, self.whatsapp_template_payload(messages))
        return self._verdicts(messages, answer)

    async def _whatsapp_text(
        self, messages: list[OutboundMessage]
    ) -> dict[str, SendResult] | Transient:
        (message,) = messages
        answer = await self._post(WHATSAPP_TEXT_PATH, self.whatsapp_text_payload(message))
        return self._verdicts(messages, answer)

    def _verdicts(
        self, messages: list[OutboundMessage], answer: httpx.Response | Transient
    ) -> dict[str, SendResult] | Transient:
        """Map Infobip's answer to one result per message (or a transient failure)."""
        if isinstance(answer, Transient):
            return answer
        status = answer.status_code
        data = _json(answer)
        if is_transient_status(status):
            failure = transient_status(answer, "Infobip error", _said(data))
            # A 5xx (a gateway's 502 or 504 above all) can come after Infobip queued the
            # messages, and it deduplicates nothing: look them up before sending again.
            return dataclasses.replace(failure, unknown=True) if status >= 500 else failure
        if status >= 300:
            code, error = _refusal(answer)
            if status == 402:  # payment required: the account's balance, not these messages
                return {
                    m.idempotency_key: held_for_account(m, self.provider, error, NO_CREDITS)
                    for m in messages
                }
            if status in (401, 403):  # the key is refused, not these messages: they wait
                return {
                    m.idempotency_key: held_for_account(m, self.provider, error, KEY_REFUSED)
                    for m in messages
                }
            if status == 400 and len(messages) > 1:
                code = _SPLIT
            return {
                m.idempotency_key: SendResult.failed(m, self.provider, error, code=code)
                for m in messages
            }
        entries = data.get("messages")
        if entries is None and "messageId" in data:
            entries = [data]
        by_id = {str(e.get("messageId")): e for e in entries or [] if isinstance(e, dict)}
        results: dict[str, SendResult] = {}
        for message in messages:
            entry = by_id.get(message_id_for(message))
            state = _status(entry)
            if entry is None or not state:
                continue  # not in the answer, or no status: unknown, reconciled before a resend
            group = str(state.get("groupName", ""))
            if group in _ACCEPTED_GROUPS:
                results[message.idempotency_key] = SendResult.sent(
                    message, self.provider, message_id_for(message)
                )
            else:
                name = str(state.get("name", group or "REJECTED"))
                description = str(state.get("description", ""))
                error = f"Infobip refused: {name} {description}".strip()
                results[message.idempotency_key] = (
                    held_for_account(message, self.provider, error, NO_CREDITS)
                    if name == NO_CREDITS_STATUS
                    else SendResult.failed(message, self.provider, error, code=_refusal_code(name))
                )
        if len(results) < len(messages):
            missing = len(messages) - len(results)
            if not results:
                return Transient(
                    f"{missing} message(s) missing from Infobip's answer", unknown=True
                )
        return results

    # ------------------------------------------------------------------ reconciliation

    async def _lookup_sms(
        self, messages: list[OutboundMessage]
    ) -> dict[str, SendResult] | Transient:
        return await self._lookup(SMS_LOOKUP_PATH, messages)

    async def _lookup_whatsapp(
        self, messages: list[OutboundMessage]
    ) -> dict[str, SendResult] | Transient:
        return await self._lookup(WHATSAPP_LOOKUP_PATH, messages)

    async def _lookup(
        self, path: str, messages: list[OutboundMessage]
    ) -> dict[str, SendResult] | Transient:
        """Which of these messages Infobip already has (sent), by messageId."""
        found: dict[str, SendResult] = {}
        for message in messages:
            try:
                response = await self.client.get(
                    self.base + path,
                    params={"messageId": message_id_for(message)},
                    headers=self._auth(),
                    timeout=self.config.timeout,
                )
            except httpx.HTTPError as exc:
                failure = transport_failure(exc)
                return Transient("lookup failed: " + failure.reason, failure.code, unknown=True)
            if response.status_code != 200:
                if is_transient_status(response.status_code):
                    said = _said(_json(response))
                    failure = transient_status(response, "Infobip lookup error", said)
                    return dataclasses.replace(failure, unknown=True)
                if response.status_code in (401, 403):
                    # The key is refused: the send would be refused the same way, so these
                    # wait as it would, instead of being looked up again and again.
                    _code, error = _refusal(response)
                    for other in messages:
                        found.setdefault(
                            other.idempotency_key,
                            held_for_account(other, self.provider, error, KEY_REFUSED),
                        )
                    return found
                return Transient(f"lookup refused (HTTP {response.status_code})", unknown=True)
            entries = _json(response).get("results")
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, Mapping):
                    continue
                if str(entry.get("messageId")) != message_id_for(message):
                    continue
                group = str(_status(entry).get("groupName", ""))
                cost, currency = message_cost(entry)
                if _status(entry).get("name") == NO_CREDITS_STATUS:
                    break  # refused unsent for the balance: send it again, now it may pay
                if group in ("REJECTED", "UNDELIVERABLE", "EXPIRED"):
                    name = str(_status(entry).get("name", group))
                    found[message.idempotency_key] = SendResult.failed(
                        message, self.provider, f"Infobip reports {name}", code=_refusal_code(name)
                    )
                else:
                    found[message.idempotency_key] = SendResult.sent(
                        message,
                        self.provider,
                        message_id_for(message),
                        cost=cost,
                        currency=currency,
                    )
                break
        return found


def error_details(data: dict[str, Any]) -> tuple[str | None, str | None]:
    """Infobip's error code and text from an error body, in either documented shape.

    Most endpoints answer `{"errorCode", "description", "action", "violations":
    [{"property", "violation"}], ...}`; some still answer the previous
    `{"requestError": {"serviceException" | "policyException": {"messageId", "text",
    "validationErrors": {field: [text]}}}}`
    (https://www.infobip.com/docs/developer-resources/api-fundamentals/rate-limits-and-throttling).
    """
    request_error = data.get("requestError")
    if isinstance(request_error, dict):
        for kind in ("serviceException", "policyException"):
            error = request_error.get(kind)
            if isinstance(error, dict):
                text = str(error.get("text") or "") or None
                fields = error.get("validationErrors")
                if isinstance(fields, dict) and fields:
                    details = "; ".join(
                        f"{name}: {', '.join(map(str, problems))}"
                        if isinstance(problems, list)
                        else f"{name}: {problems}"
                        for name, problems in fields.items()
                    )
                    text = f"{text} ({details})" if text else details
                code = error.get("messageId")
                return (str(code) if code else None), text
    if "errorCode" in data or "description" in data:
        code = data.get("errorCode")
        text = str(data.get("description") or "") or None
        violations = data.get("violations")
        if isinstance(violations, list):
            details = "; ".join(
                f"{v.get('property')}: {v.get('violation')}"
                if v.get("property")
                else str(v.get("violation"))
                for v in violations
                if isinstance(v, dict) and v.get("violation")
            )
            if details:
                text = f"{text} ({details})" if text else details
        return (str(code) if code else None), text
    return None, None


def _refusal(response: httpx.Response) -> tuple[str, str]:
    """The code and the error text of a refusal (`Infobip 401 UNAUTHORIZED: Invalid login
    details`): Infobip's error code and words, else the HTTP status's."""
    code, text = error_details(_json(response))
    code = code or f"http_{response.status_code}"
    return code, provider_error(
        "Infobip", response.status_code, code, text or response.reason_phrase
    )


def _status(entry: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """An answer entry's `status` object; empty when there is none to read (an answer in
    another shape must leave the send unknown, not make the adapter raise)."""
    status = entry.get("status") if entry is not None else None
    return status if isinstance(status, Mapping) else {}


def _said(data: dict[str, Any]) -> str | None:
    """Infobip's error body as `code: text`, if it sent one."""
    return ": ".join(part for part in error_details(data) if part) or None


def message_cost(entry: Mapping[str, Any]) -> tuple[Decimal | None, str | None]:
    """What one log or report entry says the message cost: `price.pricePerMessage` (per
    SMS part, so times `smsCount`; WhatsApp's `messageCount`) in `price.currency`."""
    price = entry.get("price")
    if not isinstance(price, Mapping):
        return None, None
    value, currency = price.get("pricePerMessage"), price.get("currency")
    parts = entry.get("smsCount", entry.get("messageCount", 1))
    if value is None or isinstance(value, bool) or isinstance(parts, bool):
        return None, None
    try:
        cost = Decimal(str(value)) * max(1, int(parts or 1))
    except (InvalidOperation, TypeError, ValueError):
        return None, None
    if not cost.is_finite():
        return None, None
    return cost, str(currency).upper() if isinstance(currency, str) and currency else None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
