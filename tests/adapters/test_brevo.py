"""Brevo adapter against the loopback stand-in: request shapes, batching, 429/500/401/400,
timeouts deduplicated by idempotency key, and an outage after which every email arrives once."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter

import httpx
import pytest
import trio

from cadence.adapters.base import ADDRESS_REJECTED, KEY_REFUSED
from cadence.adapters.brevo import BrevoAdapter
from cadence.adapters.config import BrevoConfig, Secret
from cadence.adapters.message import OutboundMessage, SendResult, SendStatus
from cadence.adapters.retry import CircuitBreaker, RetryPolicy
from cadence.adapters.standins.brevo import BrevoStandin
from tests.adapters.conftest import close_at_end, email, fast_policy, lenient_breaker


async def start(nursery: trio.Nursery, **config: object) -> tuple[BrevoStandin, BrevoAdapter]:
    standin = BrevoStandin()
    url = await nursery.start(standin.serve)
    adapter = BrevoAdapter(
        BrevoConfig(
            api_key=Secret(str(config.pop("api_key", "test-brevo-key"))),
            base_url=url,
            timeout=float(config.pop("timeout", 5.0)),  # type: ignore[arg-type]
            batch_size=int(config.pop("batch_size", 1000)),  # type: ignore[call-overload]
        ),
        policy=config.pop("policy", fast_policy()),  # type: ignore[arg-type]
        breaker=config.pop("breaker", lenient_breaker()),  # type: ignore[arg-type]
    )
    close_at_end(nursery, adapter)
    return standin, adapter


@pytest.mark.trio
async def test_single_email_request_shape(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    message = email(
        1,
        unsubscribe_url="https://t.acme.test/u/tok1",
        unsubscribe_mailto="unsub@acme.test",
        reply_to="sales@acme.test",
        tags=("welcome", "camp1"),
    )
    result = await adapter.send(message)
    assert result.status is SendStatus.SENT
    assert result.provider_message_id and result.provider_message_id.endswith(
        "@smtp-relay.mailin.fr>"
    )
    assert str(result.cost) == "0.001" and result.currency == "USD"
    (request,) = standin.requests
    assert request.headers["api-key"] == "test-brevo-key"
    body = request.json()
    assert body["sender"] == {"email": "hello@acme.test", "name": "Acme Homes"}
    assert body["to"] == [{"email": "person1@example.test", "name": "Person 1"}]
    assert body["subject"] == "Hello 1"
    assert body["htmlContent"].startswith("<html>") and body["textContent"] == "Hi 1 ✓\n"
    assert body["replyTo"] == {"email": "sales@acme.test"}
    assert body["tags"] == ["welcome", "camp1"]
    headers = body["headers"]
    assert headers["idempotencyKey"] == str(message.key_uuid())
    assert uuid.UUID(headers["idempotencyKey"]).version == 5
    assert headers["X-Mailin-custom"] == "outbox-1"
    assert headers["List-Unsubscribe"] == "<mailto:unsub@acme.test>, <https://t.acme.test/u/tok1>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["Feedback-ID"] == "camp1:node3:acme:cadence"
    (delivered,) = standin.emails
    assert delivered.to == "person1@example.test" and delivered.subject == "Hello 1"


@pytest.mark.trio
async def test_batches_use_message_versions_up_to_the_batch_size(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery, batch_size=2)
    messages = [email(n) for n in range(1, 6)]
    results = await adapter.send_batch(messages)
    assert [r.status for r in results] == [SendStatus.SENT] * 5
    assert len({r.provider_message_id for r in results}) == 5
    bodies = sorted(
        (r.json() for r in standin.requests),
        key=lambda b: b.get("messageVersions", [{}])[0].get("subject", b.get("subject")),
    )
    assert [len(b.get("messageVersions", [])) for b in bodies] == [2, 2, 0]
    first = bodies[0]
    assert "to" not in first
    assert first["messageVersions"][1] == {
        "to": [{"email": "person2@example.test", "name": "Person 2"}],
        "subject": "Hello 2",
        "htmlContent": messages[1].content.html,  # type: ignore[union-attr]
        "textContent": "Hi 2 ✓\n",
    }
    assert first["headers"]["X-Mailin-custom"].startswith("batch:")
    assert sorted(e.subject for e in standin.emails) == [f"Hello {n}" for n in range(1, 6)]


@pytest.mark.trio
async def test_a_full_batch_is_one_request(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    messages = [email(n) for n in range(1, 1001)] + [email(1001)]
    results = await adapter.send_batch(messages)
    assert all(r.ok for r in results)
    sizes = sorted(len(r.json().get("messageVersions", [])) for r in standin.requests)
    assert sizes == [0, 1000]


@pytest.mark.trio
async def test_per_contact_unsubscribe_headers_are_sent_one_by_one(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    messages = [email(n, unsubscribe_url=f"https://t.acme.test/u/{n}") for n in range(1, 4)]
    assert all(r.ok for r in await adapter.send_batch(messages))
    assert sorted(r.json()["headers"]["List-Unsubscribe"] for r in standin.requests) == [
        f"<https://t.acme.test/u/{n}>" for n in range(1, 4)
    ]


@pytest.mark.trio
async def test_names_longer_than_brevo_allows_are_shortened(nursery: trio.Nursery) -> None:
    # Brevo's SendSmtpEmailTo / Sender / ReplyTo models: "Maximum allowed characters are 70";
    # a longer name gets 400 invalid_parameter for the whole request.
    standin, adapter = await start(nursery)
    long_name = "Maximiliana " + "von Habsburg-Lothringen " * 4
    messages = [
        email(1),
        email(2, recipient_name=long_name),
        email(3, sender=f"{long_name} <hello@acme.test>", reply_to=f"{long_name} <s@acme.test>"),
    ]
    results = await adapter.send_batch(messages)
    assert [r.status for r in results] == [SendStatus.SENT] * 3
    names = {e.to: e.to_name for e in standin.emails}
    assert names["person2@example.test"] == long_name[:70].rstrip()
    bodies = [r.json() for r in standin.requests]
    assert all(len(b["sender"].get("name", "")) <= 70 for b in bodies)
    assert all(len(b.get("replyTo", {}).get("name", "")) <= 70 for b in bodies)
    assert len(standin.requests) == 2  # no request was refused and split


@pytest.mark.trio
async def test_a_name_with_line_breaks_is_sent_on_one_line(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    result = await adapter.send(email(1, recipient_name="Ann\nMarie\r\n  Lee"))
    assert result.status is SendStatus.SENT
    assert [e.to_name for e in standin.emails] == ["Ann Marie Lee"]


@pytest.mark.trio
async def test_stand_in_refuses_names_over_70_characters(nursery: trio.Nursery) -> None:
    standin = BrevoStandin()
    url = await nursery.start(standin.serve)
    base = {"subject": "s", "htmlContent": "<p>x</p>", "sender": {"email": "a@acme.test"}}
    to = [{"email": "b@example.test"}]
    cases = [
        {**base, "to": [{"email": "b@example.test", "name": "n" * 71}]},
        {**base, "to": to, "sender": {"email": "a@acme.test", "name": "n" * 71}},
        {**base, "to": to, "replyTo": {"email": "r@acme.test", "name": "n" * 71}},
    ]
    async with httpx.AsyncClient() as client:
        for body in cases:
            response = await client.post(
                url + "/v3/smtp/email", json=body, headers={"api-key": "test-brevo-key"}
            )
            assert response.status_code == 400, body
            assert response.json()["code"] == "invalid_parameter"
    assert not standin.emails


@pytest.mark.trio
async def test_429_waits_until_the_reset_brevo_names(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    standin.faults.add("429", reset=1)
    started = trio.current_time()
    result = await adapter.send(email(1))
    waited = trio.current_time() - started
    assert result.status is SendStatus.SENT and result.attempts == 2
    assert 1.0 <= waited < 2.0  # the reset, not the 20ms backoff
    assert len(standin.emails) == 1


@pytest.mark.trio
async def test_429_with_a_long_reset_becomes_retry_later(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    standin.faults.add("429", reset=3600)
    result = await adapter.send(email(1))
    assert result.status is SendStatus.RETRY_LATER and result.error_code == "rate_limited"
    assert result.retry_at is not None
    assert 3590 < (result.retry_at - _now()).total_seconds() < 3610
    assert len(standin.requests) == 1 and not standin.emails


@pytest.mark.trio
async def test_500_is_retried_and_sent_once(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    standin.faults.add("500", times=2)
    result = await adapter.send(email(1))
    assert result.status is SendStatus.SENT and result.attempts == 3
    assert len(standin.requests) == 3 and len(standin.emails) == 1


@pytest.mark.trio
async def test_401_holds_the_send_without_retrying_now(nursery: trio.Nursery) -> None:
    """A refused key refuses every send alike: the send waits (`key_refused`), not failed."""
    standin, adapter = await start(nursery, api_key="wrong-key")
    result = await adapter.send(email(1))
    assert result.status is SendStatus.RETRY_LATER and result.error_code == KEY_REFUSED
    assert result.error == "Brevo 401 unauthorized: Key not found"
    assert len(standin.requests) == 1


@pytest.mark.trio
async def test_one_bad_address_does_not_fail_its_batch(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    messages = [email(1), email(2, recipient="not-an-address"), email(3)]
    results = await adapter.send_batch(messages)
    assert [r.status for r in results] == [
        SendStatus.SENT,
        SendStatus.FAILED_PERMANENT,
        SendStatus.SENT,
    ]
    # Brevo calls the address itself invalid: the engine suppresses it, as a hard bounce.
    assert results[1].error_code == ADDRESS_REJECTED
    assert sorted(e.to for e in standin.emails) == ["person1@example.test", "person3@example.test"]


@pytest.mark.trio
async def test_timeout_is_retried_with_the_same_key_and_deduplicated(
    nursery: trio.Nursery,
) -> None:
    standin, adapter = await start(nursery, timeout=0.3)
    # Brevo takes the request but answers too late: the outcome is unknown to the adapter.
    standin.faults.add("slow", delay=1.0)
    results = await adapter.send_batch([email(1), email(2)])
    assert all(r.ok for r in results)
    keys = [r.json()["headers"]["idempotencyKey"] for r in standin.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert Counter(e.to for e in standin.emails) == {
        "person1@example.test": 1,
        "person2@example.test": 1,
    }


@pytest.mark.trio
async def test_unknown_batch_retried_later_in_another_grouping_is_not_resent(
    nursery: trio.Nursery,
) -> None:
    standin, adapter = await start(nursery, timeout=0.2, policy=fast_policy(max_attempts=1))
    standin.faults.add("slow", delay=0.5)
    first = await adapter.send_batch([email(1), email(2)])
    assert [r.status for r in first] == [SendStatus.UNKNOWN] * 2
    await trio.sleep(0.5)
    # The engine retries them later, batched with a new message.
    again = await adapter.send_batch([email(1).with_attempt(1), email(2).with_attempt(1), email(3)])
    assert all(r.ok for r in again)
    assert Counter(e.to for e in standin.emails) == {
        "person1@example.test": 1,
        "person2@example.test": 1,
        "person3@example.test": 1,
    }


@pytest.mark.trio
async def test_a_repeated_key_is_refused_as_duplicate_parameter_not_replayed(
    nursery: trio.Nursery,
) -> None:
    # https://developers.brevo.com/docs/heterogenous-versions-batch-emails: a key used within
    # its TTL gets the `duplicate_parameter` error and the request is not processed.
    standin = BrevoStandin()
    url = await nursery.start(standin.serve)
    body = {
        "sender": {"email": "a@acme.test"},
        "to": [{"email": "b@example.test"}],
        "subject": "s",
        "htmlContent": "<p>x</p>",
        "headers": {"idempotencyKey": str(uuid.uuid4())},
    }
    async with httpx.AsyncClient() as client:
        first = await client.post(
            url + "/v3/smtp/email", json=body, headers={"api-key": "test-brevo-key"}
        )
        again = await client.post(
            url + "/v3/smtp/email", json=body, headers={"api-key": "test-brevo-key"}
        )
    assert first.status_code == 201 and "messageId" in first.json()
    assert again.status_code == 400 and again.json()["code"] == "duplicate_parameter"
    assert len(standin.emails) == 1


@pytest.mark.trio
async def test_single_email_timeout_then_duplicate_key_is_sent_not_failed(
    nursery: trio.Nursery,
) -> None:
    standin, adapter = await start(nursery, timeout=0.3)
    standin.faults.add("slow", delay=1.0)  # processed, answered too late
    result = await adapter.send(email(1))
    assert result.status is SendStatus.SENT and result.attempts == 2
    (first, second) = standin.requests
    assert first.json()["headers"]["idempotencyKey"] == second.json()["headers"]["idempotencyKey"]
    assert [e.to for e in standin.emails] == ["person1@example.test"]


@pytest.mark.trio
async def test_engine_retry_after_unknown_outcome_is_sent_once(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery, timeout=0.2, policy=fast_policy(max_attempts=1))
    standin.faults.add("slow", delay=0.5)
    (first,) = await adapter.send_batch([email(1)])
    assert first.status is SendStatus.UNKNOWN
    await trio.sleep(0.5)
    # A new adapter (the engine restarted): only the message's attempt count is known.
    fresh = BrevoAdapter(adapter.config, policy=fast_policy(), breaker=lenient_breaker())
    close_at_end(nursery, fresh)
    (again,) = await fresh.send_batch([email(1).with_attempt(1)])
    assert again.status is SendStatus.SENT
    assert [e.to for e in standin.emails] == ["person1@example.test"]


@pytest.mark.trio
async def test_a_batch_key_used_by_part_of_its_batch_is_not_reused(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery, policy=fast_policy(max_attempts=1))
    standin.faults.add("drop")  # lost before Brevo processed it: the outcome is unknown
    first = await adapter.send_batch([email(1), email(2)])
    assert [r.status for r in first] == [SendStatus.UNKNOWN] * 2
    # The engine retries the two at different times: the first retry uses the batch's key
    # (Brevo processes it, since the lost request never reached it) ...
    (one,) = await adapter.send_batch([email(1).with_attempt(1)])
    assert one.status is SendStatus.SENT and one.provider_message_id
    # ... so the second must not reuse that key, or Brevo would refuse it as a duplicate.
    (two,) = await adapter.send_batch([email(2).with_attempt(1)])
    assert two.status is SendStatus.SENT and two.provider_message_id
    assert sorted(e.to for e in standin.emails) == ["person1@example.test", "person2@example.test"]


@pytest.mark.trio
async def test_outage_then_recovery_every_email_arrives_once(nursery: trio.Nursery) -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=0.2, max_reset_timeout=0.4)
    policy = RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1, max_inline_wait=0.5)
    standin, adapter = await start(nursery, policy=policy, breaker=breaker, batch_size=3)
    standin.faults.outage(1.5, "503")
    pending: dict[str, OutboundMessage] = {m.idempotency_key: m for m in map(email, range(1, 11))}
    final: dict[str, SendResult] = {}
    saw_circuit_open = False
    # A stand-in for the engine's outbox loop: resend what is not done, when it is due.
    while pending:
        results = await adapter.send_batch(list(pending.values()))
        for result in results:
            if result.status in (SendStatus.SENT, SendStatus.FAILED_PERMANENT):
                final[result.idempotency_key] = result
                del pending[result.idempotency_key]
            else:
                saw_circuit_open |= result.error_code == "circuit_open"
                message = pending[result.idempotency_key]
                pending[result.idempotency_key] = message.with_attempt(message.attempt + 1)
        await trio.sleep(0.1)
    assert saw_circuit_open
    assert all(r.status is SendStatus.SENT for r in final.values())
    assert Counter(e.to for e in standin.emails) == {
        f"person{n}@example.test": 1 for n in range(1, 11)
    }
    assert breaker.state.value == "closed"


@pytest.mark.trio
async def test_stand_in_rejects_what_brevo_rejects(nursery: trio.Nursery) -> None:
    standin = BrevoStandin()
    url = await nursery.start(standin.serve)
    good = {
        "sender": {"email": "a@acme.test"},
        "to": [{"email": "b@example.test"}],
        "subject": "s",
        "htmlContent": "<p>x</p>",
    }
    cases = [
        ({**good, "headers": {"idempotencyKey": "not-a-uuid"}}, "invalid_parameter"),
        ({k: v for k, v in good.items() if k != "subject"}, "missing_parameter"),
        ({k: v for k, v in good.items() if k != "to"}, "missing_parameter"),
        ({**good, "sender": {"email": "nope"}}, "invalid_parameter"),
        ({**good, "messageVersions": [{"to": [{"email": f"x{i}@e.test"}]} for i in range(1001)]},
         "invalid_parameter"),
        ({**good, "messageVersions": [{"to": [{"email": f"x{i}@e.test"} for i in range(100)]}]},
         "invalid_parameter"),
        ({**good, "sendr": {}}, "invalid_parameter"),
    ]  # fmt: skip
    async with httpx.AsyncClient() as client:
        for body, code in cases:
            response = await client.post(
                url + "/v3/smtp/email", json=body, headers={"api-key": "test-brevo-key"}
            )
            assert response.status_code == 400, body
            assert response.json()["code"] == code
        ok = await client.post(
            url + "/v3/smtp/email", json=good, headers={"api-key": "test-brevo-key"}
        )
        assert ok.status_code == 201 and "messageId" in ok.json()
        assert ok.headers["x-sib-ratelimit-limit"]
    assert len(standin.emails) == 1


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_sandbox_mode_marks_requests() -> None:
    adapter = BrevoAdapter(BrevoConfig(api_key=Secret("k"), sandbox=True))
    assert adapter.payload([email(1)])["headers"]["X-Sib-Sandbox"] == "drop"
    plain = BrevoAdapter(BrevoConfig(api_key=Secret("k")))
    assert "X-Sib-Sandbox" not in plain.payload([email(1)])["headers"]


@pytest.mark.trio
async def test_requests_go_out_concurrently(nursery: trio.Nursery) -> None:
    standin, adapter = await start(nursery)
    standin.faults.add("slow", times=4, delay=0.5)
    messages = [email(n, unsubscribe_url=f"https://t.acme.test/u/{n}") for n in range(1, 5)]
    started = trio.current_time()
    assert all(r.ok for r in await adapter.send_batch(messages))
    assert trio.current_time() - started < 1.2  # four 0.5s answers, not one after another
    assert len(standin.emails) == 4


@pytest.mark.trio
async def test_a_refusal_names_brevo_its_status_code_and_message(nursery: trio.Nursery) -> None:
    _, adapter = await start(nursery)
    (result,) = await adapter.send_batch([email(2, recipient="not-an-address")])
    assert result.status is SendStatus.FAILED_PERMANENT
    assert result.error == "Brevo 400 invalid_parameter: email is not valid in to[0]"
    assert result.error_code == ADDRESS_REJECTED


@pytest.mark.trio
async def test_an_outage_that_outlasts_the_retries_keeps_brevos_own_words(
    nursery: trio.Nursery,
) -> None:
    standin, adapter = await start(nursery, policy=fast_policy(max_attempts=2))
    standin.faults.add("503", times=2)
    result = await adapter.send(email(1))
    assert result.status is SendStatus.RETRY_LATER and result.error_code == "http_503"
    assert result.error == "Brevo error (HTTP 503: internal_error: Internal error)"
    standin.faults.add("429", times=5, reset=3600)
    limited = await adapter.send(email(2))
    assert limited.error_code == "rate_limited"
    assert "too_many_requests: The expected rate limit is exceeded." in (limited.error or "")


@pytest.mark.trio
async def test_a_429_without_brevos_reset_header_waits_for_retry_after() -> None:
    """A 429 from something in front of Brevo (a proxy) has no x-sib-ratelimit-reset; its
    Retry-After is the wait, not the short backoff that would hit the limit again."""
    result = await _answered(
        httpx.Response(429, headers={"retry-after": "120"},
                       json={"code": "too_many_requests", "message": "slow down"})
    )  # fmt: skip
    assert result.status is SendStatus.RETRY_LATER and result.error_code == "rate_limited"
    assert result.retry_at is not None
    assert 110 < (result.retry_at - _now()).total_seconds() < 130


async def _answered(answer: httpx.Response) -> SendResult:
    """What the adapter makes of one email that Brevo (or what stands before it) answers
    with `answer`, every time."""

    def handler(request: httpx.Request) -> httpx.Response:
        return answer

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        adapter = BrevoAdapter(
            BrevoConfig(api_key=Secret("k"), base_url="https://brevo.test"),
            client=client, policy=fast_policy(), breaker=lenient_breaker(),
        )  # fmt: skip
        return await adapter.send(email(1))


@pytest.mark.trio
@pytest.mark.parametrize(
    "headers",
    [{"x-sib-ratelimit-reset": "1e20"}, {"retry-after": "inf"},
     {"retry-after": "99999999999999"}],
)  # fmt: skip
async def test_a_wait_past_any_date_is_a_retry_within_a_day(headers: dict[str, str]) -> None:
    """A wait no clock can reach (a proxy's broken header) made the adapter raise out of the
    send, which adapters never do for a provider's answer: it is held to a day."""
    result = await _answered(
        httpx.Response(429, headers=headers, json={"code": "too_many_requests"})
    )
    assert result.status is SendStatus.RETRY_LATER and result.error_code == "rate_limited"
    assert result.retry_at is not None
    assert 86_000 < (result.retry_at - _now()).total_seconds() <= 86_400


@pytest.mark.trio
async def test_a_sender_name_with_an_unquoted_comma_keeps_its_address(
    nursery: trio.Nursery,
) -> None:
    """`Acme, Inc. <hello@acme.test>` was read as the address `Acme` (RFC 5322 wants the
    name quoted), so Brevo refused every send of the campaign; the bracketed address is
    the address, whatever the name holds."""
    standin, adapter = await start(nursery)
    message = email(1, sender="Acme, Inc. <hello@acme.test>", reply_to="Sales; EMEA <s@acme.test>")
    result = await adapter.send(message)
    assert result.status is SendStatus.SENT, result.error
    body = standin.requests[0].json()
    assert body["sender"] == {"email": "hello@acme.test", "name": "Acme, Inc."}
    assert body["replyTo"] == {"email": "s@acme.test", "name": "Sales; EMEA"}
    quoted = email(2, sender='"Acme \\"Best\\" Homes" <hello@acme.test>')
    assert adapter.payload([quoted])["sender"] == {
        "email": "hello@acme.test", "name": 'Acme "Best" Homes',
    }  # fmt: skip
