"""SMTP end to end against a real aiosmtpd server on loopback: headers, parts, reuse, TLS, auth."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import subprocess
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from cadence.adapters.base import ADDRESS_REJECTED, KEY_REFUSED
from cadence.adapters.config import SmtpConfig
from cadence.adapters.message import SendStatus, feedback_id_for
from cadence.adapters.render import EmailContent
from cadence.adapters.smtp import SmtpAdapter
from cadence.adapters.tracking import LinkSigner, TrackingLinks
from tests.adapters.conftest import email as email_message
from tests.adapters.conftest import fast_policy, lenient_breaker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox:
    """aiosmtpd handler: keeps every message; refuses some recipients on purpose."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []
        self.sessions: set[int] = set()

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        if address.startswith("policy@"):
            return "550 5.7.1 Message refused by policy"
        if address.startswith("busy@"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        self.sessions.add(id(session))
        return "250 Message accepted"


def adapter_for(port: int, pool_size: int = 4, **config: Any) -> SmtpAdapter:
    return SmtpAdapter(
        SmtpConfig(host="127.0.0.1", port=port, security=config.pop("security", "none"), **config),
        pool_size=pool_size,
        policy=fast_policy(),
        breaker=lenient_breaker(),
    )


def test_multipart_email_with_deliverability_headers(inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    adapter = adapter_for(port)
    message = email_message(
        1,
        unsubscribe_url="https://t.acme.test/u/tok1",
        unsubscribe_mailto="unsubscribe@acme.test",
        reply_to="Sales <sales@acme.test>",
    )

    async def main() -> None:
        result = await adapter.send(message)
        assert result.status is SendStatus.SENT
        assert result.cost is not None and str(result.cost) == "0.001"
        again = email_message(1).with_attempt(1)
        assert (await adapter.send(again)).provider_message_id == result.provider_message_id
        await adapter.aclose()

    trio.run(main)
    envelope, mime = handler.messages[0]
    assert envelope.mail_from == "hello@acme.test"
    assert envelope.rcpt_tos == ["person1@example.test"]
    assert mime["From"] == "Acme Homes <hello@acme.test>"
    assert mime["To"] == "Person 1 <person1@example.test>"
    assert mime["Reply-To"] == "Sales <sales@acme.test>"
    assert mime["Subject"] == "Hello 1"
    # Message-ID: derived from the idempotency key, so the same send keeps the same id.
    assert mime["Message-ID"] == handler.messages[1][1]["Message-ID"]
    assert mime["Message-ID"].endswith("@acme.test>")
    assert mime["List-Unsubscribe"] == (
        "<mailto:unsubscribe@acme.test>, <https://t.acme.test/u/tok1>"
    )
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mime["Feedback-ID"] == "camp1:node3:acme:cadence"
    assert mime["X-Cadence-Idempotency-Key"] == "camp1:v1:node3:contact1:0"
    assert mime.get_content_type() == "multipart/alternative"
    parts = list(mime.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert isinstance(parts[0], EmailMessage) and isinstance(parts[1], EmailMessage)
    assert parts[0].get_content().replace("\r\n", "\n") == "Hi 1 ✓\n"
    assert "<p>Hi <b>1</b> ✓</p>" in parts[1].get_content()


def _raw_headers(content: bytes) -> dict[str, str]:
    """The header fields as they are on the wire, unfolded but not decoded (RFC 5322 2.2.3):
    what a mailbox provider reads List-Unsubscribe and Feedback-ID from."""
    head = content.split(b"\r\n\r\n", 1)[0].decode("ascii")
    fields: dict[str, str] = {}
    for line in head.replace("\r\n ", " ").replace("\r\n\t", "\t").split("\r\n"):
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def test_long_machine_read_headers_are_folded_not_encoded(inbox: tuple[Inbox, int]) -> None:
    """A real unsubscribe URL (a signed link to the send's key) is longer than a header
    line: it must reach the mailbox provider as written, not as RFC 2047 encoded-words."""
    handler, port = inbox
    key = "open-house-follow-up:v3:node_reminder:0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f:0"
    unsubscribe = TrackingLinks("https://links.acme-homes.example", LinkSigner("k")).url(
        "unsubscribe", "acme", key
    )
    message = email_message(
        1,
        idempotency_key=key,
        campaign_id="open-house-follow-up-for-every-listing-in-the-spring-season-2026",
        node_id="node_reminder_after_the_second_viewing",
        unsubscribe_url=unsubscribe,
        unsubscribe_mailto="unsubscribe@acme.test",
    )

    async def main() -> None:
        assert (await adapter_for(port).send(message)).status is SendStatus.SENT

    trio.run(main)
    envelope, _ = handler.messages[0]
    assert isinstance(envelope.content, bytes)
    head = envelope.content.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    fields = _raw_headers(envelope.content)
    assert fields["List-Unsubscribe"] == f"<mailto:unsubscribe@acme.test>, <{unsubscribe}>"
    assert fields["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert fields["Feedback-ID"] == feedback_id_for(message, "cadence")
    assert fields["X-Cadence-Idempotency-Key"] == key
    # Text for people is still encoded where it must be.
    assert fields["From"] == "Acme Homes <hello@acme.test>"


def test_non_ascii_bodies_are_7bit_unless_8bitmime_is_declared(inbox: tuple[Inbox, int]) -> None:
    """RFC 6152: 8-bit data only with BODY=8BITMIME (and never to a server without it)."""
    handler, port = inbox
    content = EmailContent(
        subject="Grüße", preheader="", html="<p>Grüße ✓</p>", text="Grüße ✓\n", locale="de"
    )

    async def main() -> None:
        assert (await adapter_for(port).send(email_message(1, content=content))).ok

    trio.run(main)
    envelope, mime = handler.messages[0]
    assert isinstance(envelope.content, bytes)
    declared = any(option.upper() == "BODY=8BITMIME" for option in envelope.mail_options)
    assert declared or envelope.content.isascii()
    parts = list(mime.iter_parts())
    assert isinstance(parts[0], EmailMessage) and isinstance(parts[1], EmailMessage)
    assert parts[0].get_content().replace("\r\n", "\n") == "Grüße ✓\n"
    assert parts[1].get_content().strip() == "<p>Grüße ✓</p>"


def test_a_line_break_in_a_name_or_address_fails_no_other_message(
    inbox: tuple[Inbox, int],
) -> None:
    """A contact's name from a multi-line cell is one line in To; an address no header can
    hold fails that message alone, where it used to raise out of the whole batch."""
    handler, port = inbox
    batch = [
        email_message(1, recipient_name="Ann\nMarie\r\n  Lee"),
        email_message(2, recipient="person2@example.test\r\nBcc: x@elsewhere.test"),
        email_message(3),
    ]

    async def main() -> None:
        results = await adapter_for(port).send_batch(batch)
        assert [r.status for r in results] == [
            SendStatus.SENT, SendStatus.FAILED_PERMANENT, SendStatus.SENT
        ]  # fmt: skip
        assert results[1].error_code == "invalid_message"

    trio.run(main)
    received = {env.rcpt_tos[0]: mime for env, mime in handler.messages}
    assert sorted(received) == ["person1@example.test", "person3@example.test"]
    assert received["person1@example.test"]["To"] == "Ann Marie Lee <person1@example.test>"


@pytest.mark.parametrize("pool_size", [1, 3])
def test_connections_are_pooled_and_reused(inbox: tuple[Inbox, int], pool_size: int) -> None:
    handler, port = inbox
    adapter = adapter_for(port, pool_size=pool_size)

    async def main() -> None:
        for start in (1, 11):
            batch = [email_message(n) for n in range(start, start + 10)]
            results = await adapter.send_batch(batch)
            assert [r.status for r in results] == [SendStatus.SENT] * 10
        await adapter.aclose()

    trio.run(main)
    assert sorted(env.rcpt_tos[0] for env, _ in handler.messages) == sorted(
        f"person{n}@example.test" for n in range(1, 21)
    )
    assert 1 <= adapter.connections_opened <= pool_size
    assert len(handler.sessions) == adapter.connections_opened


def test_refused_recipients_permanent_and_temporary(inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    adapter = adapter_for(port)

    async def main() -> None:
        results = await adapter.send_batch(
            [
                email_message(1, recipient="nobody@example.test"),
                email_message(2, recipient="busy@example.test"),
                email_message(3),
                email_message(4, recipient="policy@example.test"),
            ]
        )
        assert results[0].status is SendStatus.FAILED_PERMANENT
        # 5.1.1: the mailbox is not there, a hard bounce before sending.
        assert results[0].error_code == ADDRESS_REJECTED and results[0].attempts == 1
        assert results[1].status is SendStatus.RETRY_LATER
        assert results[1].error_code == "smtp_451" and results[1].attempts == 4
        assert results[2].status is SendStatus.SENT
        # 5.7.1 refuses this message, not the address.
        assert results[3].status is SendStatus.FAILED_PERMANENT
        assert results[3].error_code == "smtp_550"
        await adapter.aclose()

    trio.run(main)
    assert [env.rcpt_tos for env, _ in handler.messages] == [["person3@example.test"]]


def test_server_down_is_retry_later() -> None:
    adapter = adapter_for(free_port())

    async def main() -> None:
        result = await adapter.send(email_message(1))
        assert result.status is SendStatus.RETRY_LATER
        assert result.error_code == "connect_failed" and result.retry_at is not None

    trio.run(main)


# ------------------------------------------------------------------------------ TLS and auth


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def authenticator(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"mailer"
        and auth_data.password == b"s3cret"
    )
    return AuthResult(success=ok, handled=False)


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_tls_and_login(certificate: tuple[Path, Path], mode: str) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = Inbox()
    port = free_port()
    # aiosmtpd only counts STARTTLS as TLS for AUTH; on implicit TLS the socket is TLS anyway.
    options: dict[str, Any] = {
        "authenticator": authenticator,
        "auth_require_tls": mode == "starttls",
    }
    if mode == "starttls":
        controller = Controller(
            handler, hostname="127.0.0.1", port=port, tls_context=context,
            require_starttls=True, **options,
        )  # fmt: skip
    else:
        controller = Controller(
            handler, hostname="127.0.0.1", port=port, ssl_context=context, **options
        )
    controller.start()
    try:
        good = adapter_for(
            port, security=mode, username="mailer", password=_secret("s3cret"), verify_tls=False
        )
        bad = adapter_for(
            port, security=mode, username="mailer", password=_secret("wrong"), verify_tls=False
        )
        strict = adapter_for(
            port, security=mode, username="mailer", password=_secret("s3cret"), verify_tls=True
        )

        async def main() -> None:
            assert (await good.send(email_message(1))).status is SendStatus.SENT
            refused = await bad.send(email_message(2))
            # A refused login refuses every send alike: held (`key_refused`), not failed.
            assert refused.status is SendStatus.RETRY_LATER
            assert refused.error_code == KEY_REFUSED and refused.attempts == 1
            assert (refused.error or "").startswith("SMTP login refused: 535")
            # A self-signed certificate is refused unless verification is turned off.
            assert (await strict.send(email_message(3))).status is SendStatus.RETRY_LATER
            for sender in (good, bad, strict):
                await sender.aclose()

        trio.run(main)
    finally:
        controller.stop()
    assert len(handler.messages) == 1


def _secret(value: str) -> Any:
    from cadence.adapters.config import Secret

    return Secret(value)


def test_a_sender_name_with_an_unquoted_comma_is_quoted_not_taken_for_the_address(
    inbox: tuple[Inbox, int],
) -> None:
    handler, port = inbox
    adapter = adapter_for(port)
    message = email_message(1, sender="Jo Smith, PhD <jo@acme.test>")
    result = trio.run(adapter.send, message)
    assert result.status is SendStatus.SENT, result.error
    ((envelope, mime),) = handler.messages
    assert envelope.mail_from == "jo@acme.test"
    assert mime["From"] == '"Jo Smith, PhD" <jo@acme.test>'
    trio.run(adapter.aclose)


def test_a_temporary_login_failure_is_retried_not_permanent() -> None:
    """RFC 4954: 454 4.7.0 is a temporary authentication failure (the server's credential
    store is away); smtplib raises it as SMTPAuthenticationError like a refused password,
    and every send of that moment failed for good."""
    # smtplib tries each mechanism the server offers (PLAIN, LOGIN) before it gives up.
    refusals = ["454 4.7.0 Temporary authentication failure"] * 2

    def flaky(server: Any, session: Session, envelope: Envelope, mechanism: str,
              auth_data: Any) -> AuthResult:  # fmt: skip
        if refusals:
            return AuthResult(success=False, handled=False, message=refusals.pop())
        return authenticator(server, session, envelope, mechanism, auth_data)

    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=flaky,
                            auth_require_tls=False)  # fmt: skip
    controller.start()
    try:
        sender = adapter_for(port, username="mailer", password=_secret("s3cret"))
        result = trio.run(sender.send, email_message(1))
        trio.run(sender.aclose)
    finally:
        controller.stop()
    assert result.status is SendStatus.SENT and result.attempts == 2, result
    assert len(handler.messages) == 1
