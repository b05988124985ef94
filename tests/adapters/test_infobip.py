"""Infobip adapter against the loopback stand-in: SMS and WhatsApp request shapes, failures,
and reconciliation by messageId so an unknown outcome never becomes a double send."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import httpx
import pytest
import trio

from cadence.adapters.base import ADDRESS_REJECTED, KEY_REFUSED
from cadence.adapters.config import InfobipConfig, Secret
from cadence.adapters.infobip import InfobipAdapter, message_id_for
from cadence.adapters.message import OutboundMessage, SendResult, SendStatus
from cadence.adapters.render import WhatsAppContent
from cadence.adapters.retry import CircuitBreaker, RetryPolicy
from cadence.adapters.standins.infobip import InfobipStandin
from cadence.engine.clock import read_instant
from tests.adapters.conftest import close_at_end, fast_policy, lenient_breaker, sms, whatsapp


async def start(nursery: trio.Nursery, **config: Any) -> tuple[InfobipStandin, InfobipAdapter]:
    standin = InfobipStandin()
    url = await nursery.start(standin.serve)
    adapter = InfobipAdapter(
        InfobipConfig(
            api_key=Secret(config.pop("api_key", "test-infobip-key")),
            base_url=url,
            sms_sender="AcmeHomes",
            whatsapp_sender="447860099299",
            notify_url="https://hooks.acme.test/infobip",
            timeout=config.pop("timeout", 5.0),
            batch_size=config.pop("batch_size", 100),
        ),
        policy=config.pop("policy", fast_policy()),
        breaker=config.pop("breaker", lenient_breaker()),
    )
    close_at_end(nursery, adapter)
    return standin, adapter


def sends(standin: InfobipStandin, path: str) -> list[dict[str, Any]]:
    return [r.json() for r in standin.requests if r.path == path and r.method == "POST"]


@pytest.mark.trio
async def test_sms_batch_request_shape(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    messages = [sms(1), sms(2, text="Olá Zoë! Ainda à procura?")]
    results = await adapter.send_batch(messages)
    assert [r.status for r in results] == [SendStatus.SENT] * 2
    assert results[0].provider_message_id == message_id_for(messages[0])
    (request,) = standin.requests
    assert request.headers["authorization"] == "App test-infobip-key"
    body = request.json()
    assert body["bulkId"] and len(body["messages"]) == 2
    first = body["messages"][0]
    assert first["destinations"] == [
        {"to": "447946000001", "messageId": message_id_for(messages[0])}
    ]
    assert first["from"] == "AcmeHomes"
    assert first["text"] == "Hi 1, still looking? Reply STOP to opt out."
    assert first["notifyUrl"] == "https://hooks.acme.test/infobip"
    assert json.loads(first["callbackData"]) == {
        "outbox": "outbox-sms-1",
        "tenant": "acme",
        "key": "camp1:v1:node4:contact1:0",
    }
    assert [m.text for m in standin.messages] == [
        "Hi 1, still looking? Reply STOP to opt out.",
        "Olá Zoë! Ainda à procura?",
    ]
    # The message ids are the same on every retry of the same send.
    assert message_id_for(sms(1).with_attempt(3)) == message_id_for(messages[0])


@pytest.mark.trio
async def test_sms_batches_split_by_size(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery, batch_size=2)
    assert all(r.ok for r in await adapter.send_batch([sms(n) for n in range(1, 6)]))
    sizes = sorted(len(b["messages"]) for b in sends(standin, "/sms/2/text/advanced"))
    assert sizes == [1, 2, 2]


@pytest.mark.trio
async def test_rejected_destination_refuses_the_number_for_good(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    results = await adapter.send_batch([sms(1, recipient="12"), sms(2)])
    assert results[0].status is SendStatus.FAILED_PERMANENT
    # The number matches no operator: the engine suppresses it, as a dead mailbox.
    assert results[0].error_code == ADDRESS_REJECTED and "REJECTED_DESTINATION" in results[0].error
    assert results[1].ok
    assert len(standin.requests) == 1


@pytest.mark.trio
async def test_401_holds_the_send_without_retrying_now(nursery: trio.Nursery) -> None:
    """A refused key refuses every send alike: the send waits (`key_refused`), not failed."""
    standin, adapter = await start(nursery, api_key="wrong")
    result = await adapter.send(sms(1))
    assert result.status is SendStatus.RETRY_LATER and result.error_code == KEY_REFUSED
    assert len(standin.requests) == 1


@pytest.mark.trio
@pytest.mark.parametrize(
    ("style", "code"), [("legacy", "UNAUTHORIZED"), ("current", "E401")], ids=["legacy", "current"]
)
async def test_both_published_error_shapes_are_read(
    nursery: trio.Nursery, style: str, code: str
) -> None:
    # https://www.infobip.com/docs/developer-resources/api-fundamentals/rate-limits-and-throttling:
    # most endpoints answer {"errorCode", "description", "violations", ...}, some the previous
    # {"requestError": {"serviceException": {"messageId", "text"}}}.
    standin, adapter = await start(nursery, api_key="wrong")
    standin.error_style = style  # type: ignore[assignment]
    result = await adapter.send(sms(1))
    assert result.status is SendStatus.RETRY_LATER and result.error_code == KEY_REFUSED
    assert f"401 {code}: Invalid login details" in (result.error or "")
    assert len(standin.requests) == 1


@pytest.mark.trio
@pytest.mark.parametrize("style", ["legacy", "current"])
async def test_a_refused_field_is_named_in_the_error(nursery: trio.Nursery, style: str) -> None:
    standin, adapter = await start(nursery)
    standin.error_style = style  # type: ignore[assignment]
    message = whatsapp(1, window=True)
    empty = replace(message, content=replace(message.content, text=""))  # type: ignore[type-var]
    result = await adapter.send(empty)
    assert result.status is SendStatus.FAILED_PERMANENT
    assert result.error_code == ("BAD_REQUEST" if style == "legacy" else "E400")
    assert "content.text" in (result.error or "")
    assert not standin.messages


@pytest.mark.trio
@pytest.mark.parametrize("style", ["legacy", "current"])
async def test_429_honours_retry_after(nursery: trio.Nursery, style: str) -> None:
    standin, adapter = await start(nursery)
    standin.error_style = style  # type: ignore[assignment]
    standin.faults.add("429", retry_after=1)
    started = trio.current_time()
    result = await adapter.send(sms(1))
    assert result.ok and 1.0 <= trio.current_time() - started < 2.0
    assert standin.deliveries() == {message_id_for(sms(1)): 1}


@pytest.mark.trio
async def test_500_then_success_sends_once(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    standin.faults.add("500", times=2)
    result = await adapter.send(sms(1))
    assert result.ok and result.attempts == 3
    assert standin.deliveries() == {message_id_for(sms(1)): 1}


@pytest.mark.trio
@pytest.mark.parametrize("fault", ["slow", "drop", "500", "503"])
async def test_unknown_outcome_is_reconciled_not_resent(nursery: trio.Nursery, fault: str) -> None:
    standin, adapter = await start(nursery, timeout=0.3)
    # Infobip takes the messages, then the answer is lost (too slow, or connection dropped)
    # or is an error (a gateway's 5xx in front of Infobip, which had queued them).
    standin.faults.add(fault, delay=1.0 if fault == "slow" else 0.0, process=True)  # type: ignore[arg-type]
    messages = [sms(1), sms(2)]
    results = await adapter.send_batch(messages)
    assert all(r.ok for r in results)
    # Reconciled from the logs: Infobip's price comes back as the cost.
    assert {(str(r.cost), r.currency) for r in results} == {("0.007", "EUR")}
    assert standin.deliveries() == {message_id_for(m): 1 for m in messages}
    lookups = [r for r in standin.requests if r.path == "/sms/1/logs"]
    assert {r.query["messageId"][0] for r in lookups} == {message_id_for(m) for m in messages}


@pytest.mark.trio
async def test_dropped_before_processing_is_sent_after_lookup(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    standin.faults.add("drop")  # the request never reached Infobip's queue
    result = await adapter.send(sms(1))
    assert result.ok and result.attempts == 2
    assert standin.deliveries() == {message_id_for(sms(1)): 1}
    assert [r.path for r in standin.requests] == [
        "/sms/2/text/advanced",
        "/sms/1/logs",
        "/sms/2/text/advanced",
    ]


@pytest.mark.trio
async def test_retry_of_an_earlier_attempt_looks_first(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery, timeout=0.2, policy=fast_policy(max_attempts=1))
    standin.faults.add("slow", delay=0.5, process=True)
    first = await adapter.send_batch([sms(1), sms(2)])
    assert [r.status for r in first] == [SendStatus.UNKNOWN] * 2
    # Later (say after a restart: a fresh adapter), the engine tries again with attempt=1.
    later = InfobipAdapter(adapter.config, policy=fast_policy(), breaker=lenient_breaker())
    close_at_end(nursery, later)
    results = await later.send_batch([sms(1).with_attempt(1), sms(2).with_attempt(1), sms(3)])
    assert all(r.ok for r in results)
    assert standin.deliveries() == {message_id_for(sms(n)): 1 for n in (1, 2, 3)}


@pytest.mark.trio
async def test_whatsapp_template_outside_the_window(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    results = await adapter.send_batch([whatsapp(1), whatsapp(2)])
    assert all(r.ok for r in results)
    (body,) = sends(standin, "/whatsapp/1/message/template")
    assert body["bulkId"]
    assert body["messages"][0] == {
        "from": "447860099299",
        "to": "447946000101",
        "messageId": message_id_for(whatsapp(1)),
        "content": {
            "templateName": "viewing_reminder",
            "templateData": {"body": {"placeholders": ["Person 1", "Oslo"]}},
            "language": "en",
        },
        "callbackData": body["messages"][0]["callbackData"],
        "notifyUrl": "https://hooks.acme.test/infobip",
    }
    assert [m.placeholders for m in standin.messages] == [
        ("Person 1", "Oslo"),
        ("Person 2", "Oslo"),
    ]


@pytest.mark.trio
@pytest.mark.parametrize("style", ["legacy", "current"])
async def test_a_batch_refused_for_one_message_fails_only_that_message(
    nursery: trio.Nursery, style: str
) -> None:
    # Infobip answers 400 for the whole request when one message's placeholder is empty.
    standin, adapter = await start(nursery)
    standin.error_style = style  # type: ignore[assignment]
    bad = whatsapp(2)
    assert isinstance(bad.content, WhatsAppContent) and bad.content.approved is not None
    empty = replace(bad.content.approved, parameters=("", "Oslo"))
    bad = replace(bad, content=replace(bad.content, approved=empty))
    results = await adapter.send_batch([whatsapp(1), bad, whatsapp(3)])
    assert [r.status for r in results] == [
        SendStatus.SENT, SendStatus.FAILED_PERMANENT, SendStatus.SENT,
    ]  # fmt: skip
    assert results[1].error_code == ("BAD_REQUEST" if style == "legacy" else "E400")
    assert "placeholders" in (results[1].error or "")
    assert [m.placeholders[0] for m in standin.messages] == ["Person 1", "Person 3"]
    assert standin.deliveries("whatsapp").most_common(1)[0][1] == 1


@pytest.mark.trio
async def test_whatsapp_free_text_only_inside_the_window(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    results = await adapter.send_batch(
        [
            whatsapp(1, window=True),
            whatsapp(2, approved=False),
            whatsapp(3, approved=False, window=True),
        ]
    )
    assert [r.status for r in results] == [
        SendStatus.SENT,
        SendStatus.FAILED_PERMANENT,
        SendStatus.SENT,
    ]
    assert results[1].error_code == "whatsapp_outside_window"
    texts = sends(standin, "/whatsapp/1/message/text")
    assert sorted(t["content"]["text"] for t in texts) == ["Hi Person 1 👋", "Hi Person 3 👋"]
    assert not sends(standin, "/whatsapp/1/message/template")


@pytest.mark.trio
async def test_whatsapp_timeout_is_reconciled(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery, timeout=0.3)
    standin.faults.add("slow", delay=1.0, process=True)
    assert (await adapter.send(whatsapp(1))).ok
    assert standin.deliveries("whatsapp") == {message_id_for(whatsapp(1)): 1}
    assert any(r.path == "/whatsapp/1/reports" for r in standin.requests)


@pytest.mark.trio
async def test_outage_then_recovery_every_sms_arrives_once(nursery: trio.Nursery) -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=0.2, max_reset_timeout=0.4)
    policy = RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1, max_inline_wait=0.5)
    standin, adapter = await start(
        nursery, policy=policy, breaker=breaker, batch_size=4, timeout=0.3
    )
    standin.faults.add("slow", delay=0.6, process=True)  # first the answers get lost ...
    standin.faults.outage(1.5, "503")  # ... then the provider is down for a while
    pending: dict[str, OutboundMessage] = {m.idempotency_key: m for m in map(sms, range(1, 11))}
    final: dict[str, SendResult] = {}
    while pending:
        for result in await adapter.send_batch(list(pending.values())):
            if result.status in (SendStatus.SENT, SendStatus.FAILED_PERMANENT):
                final[result.idempotency_key] = result
                del pending[result.idempotency_key]
            else:
                message = pending[result.idempotency_key]
                pending[result.idempotency_key] = message.with_attempt(message.attempt + 1)
        await trio.sleep(0.1)
    assert all(r.ok for r in final.values())
    assert standin.deliveries() == {message_id_for(sms(n)): 1 for n in range(1, 11)}


@pytest.mark.trio
async def test_stand_in_logs_use_infobips_time_format(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    assert (await adapter.send(sms(1))).ok
    auth = {"Authorization": "App test-infobip-key"}
    async with httpx.AsyncClient(base_url=standin.base_url, headers=auth) as client:
        response = await client.get("/sms/1/logs", params={"messageId": message_id_for(sms(1))})
    (entry,) = response.json()["results"]
    for name in ("sentAt", "doneAt"):  # yyyy-MM-dd'T'HH:mm:ss.SSSZ, as Infobip documents
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", entry[name])
        assert read_instant(entry[name]) is not None


@pytest.mark.trio
async def test_stand_in_validates_requests(nursery: trio.Nursery) -> None:
    standin = InfobipStandin()
    url = await nursery.start(standin.serve)
    auth = {"Authorization": "App test-infobip-key"}
    async with httpx.AsyncClient(base_url=url, headers=auth) as client:
        bad_bodies = [
            ("/sms/2/text/advanced", {"messages": []}),
            ("/sms/2/text/advanced", {"messages": [{"destinations": [{"to": "4479"}]}]}),
            ("/sms/2/text/advanced", {"messages": [{"text": "x"}]}),
            ("/whatsapp/1/message/template", {"messages": [{"from": "1", "to": "2"}]}),
            ("/whatsapp/1/message/text", {"from": "1", "to": "2", "content": {}}),
        ]
        for path, body in bad_bodies:
            response = await client.post(path, json=body)
            assert response.status_code == 400, body
            assert response.json()["requestError"]["serviceException"]["messageId"] == "BAD_REQUEST"
        response = await client.post(
            "/sms/2/text/advanced", json={"messages": []}, headers={"Authorization": "App nope"}
        )
        assert response.status_code == 401
        assert response.json()["requestError"]["serviceException"]["messageId"] == "UNAUTHORIZED"
    assert not standin.messages


@pytest.mark.trio
@pytest.mark.parametrize(
    ("style", "expected"),
    [("legacy", "Infobip 401 UNAUTHORIZED: Invalid login details"),
     ("current", "Infobip 401 E401: Invalid login details")],
    ids=["legacy", "current"],
)  # fmt: skip
async def test_a_refusal_names_infobip_its_status_code_and_message(
    nursery: trio.Nursery, style: str, expected: str
) -> None:
    standin, adapter = await start(nursery, api_key="wrong")
    standin.error_style = style  # type: ignore[assignment]
    result = await adapter.send(sms(1))
    assert result.status is SendStatus.RETRY_LATER and result.error == expected


@pytest.mark.trio
async def test_an_outage_that_outlasts_the_retries_keeps_infobips_own_words(
    nursery: trio.Nursery,
) -> None:
    standin, adapter = await start(nursery, policy=fast_policy(max_attempts=2))
    standin.faults.add("503", times=10)
    result = await adapter.send(sms(1))
    assert result.status in (SendStatus.RETRY_LATER, SendStatus.UNKNOWN)
    assert "HTTP 503: GENERAL_ERROR: Something went wrong" in (result.error or ""), result.error


def _mocked(answer: Any, logs: Any) -> InfobipAdapter:
    """An adapter whose sends get `answer` (HTTP 200) and whose lookups get `logs`."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=logs if request.method == "GET" else answer)

    return InfobipAdapter(
        InfobipConfig(api_key=Secret("k"), base_url="https://infobip.test", sms_sender="Acme"),
        client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        policy=fast_policy(max_attempts=1), breaker=lenient_breaker(),
    )  # fmt: skip


@pytest.mark.trio
@pytest.mark.parametrize("status", [None, "PENDING"])
async def test_an_answer_entry_without_a_status_object_leaves_the_send_unknown(
    status: Any,
) -> None:
    """Read as `entry["status"].get(...)`, an entry whose status was null or text made the
    adapter raise out of the send; it is no verdict: the send is looked up before a resend."""
    message = sms(1)
    adapter = _mocked({"messages": [{"messageId": message_id_for(message), "status": status}]},
                      {"results": []})  # fmt: skip
    result = await adapter.send(message)
    await adapter.client.aclose()
    assert result.status is SendStatus.UNKNOWN


@pytest.mark.trio
@pytest.mark.parametrize("logs", [{"results": None}, {"results": [None, "x"]}])
async def test_a_lookup_answer_in_another_shape_finds_nothing(logs: Any) -> None:
    message = sms(1).with_attempt(1)
    pending = {"groupName": "PENDING", "name": "PENDING_ACCEPTED"}
    adapter = _mocked({"messages": [{"messageId": message_id_for(message), "status": pending}]},
                      logs)  # fmt: skip
    result = await adapter.send(message)
    await adapter.client.aclose()
    assert result.status is SendStatus.SENT


@pytest.mark.trio
@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
async def test_a_retry_whose_lookup_is_refused_for_credentials_waits_as_a_send_would(
    nursery: trio.Nursery, channel: str
) -> None:
    """A retried message is looked up before it is sent; a 401 on that lookup was read as
    an unknown outcome, so with a revoked key a retried message was looked up again and
    again instead of waiting for the key, as its send would (`key_refused`)."""
    standin, adapter = await start(nursery, api_key="wrong")
    message = (sms(1) if channel == "sms" else whatsapp(1)).with_attempt(1)
    result = await adapter.send(message)
    assert result.status is SendStatus.RETRY_LATER, result
    assert result.error == "Infobip 401 UNAUTHORIZED: Invalid login details"
    assert result.error_code == KEY_REFUSED
    assert [r.method for r in standin.requests] == ["GET"] and not standin.messages
