"""Email over SMTP: multipart text + HTML, deliverability headers, pooled connections.

smtplib runs in Trio worker threads (`trio.to_thread`); open connections are kept in a
small pool and reused across messages. Each message gets a `Message-ID` derived from its
idempotency key, `List-Unsubscribe` (mailto and https) with RFC 8058's
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`, and a `Feedback-ID`. A 5xx reply
(bad mailbox, refused sender) is permanent, except a refused login, which holds the send
as a refused API key does (`KEY_REFUSED`); 4xx replies, refused or
dropped connections and timeouts are retried. SMTP has no way to ask whether a message
that lost its final reply was taken, so that case is retried with the same Message-ID
(at-least-once), and reported as unknown when retries run out.
"""

from __future__ import annotations

import random
import re
import smtplib
import ssl
import threading
from collections.abc import Sequence
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.policy import default as default_policy
from email.utils import formatdate
from typing import TYPE_CHECKING

import trio

from cadence.adapters.base import (
    ADDRESS_REJECTED,
    KEY_REFUSED,
    AdapterBase,
    Transient,
    held_for_account,
    ordered,
)
from cadence.adapters.config import SmtpConfig
from cadence.adapters.message import (
    Channel,
    EmailAddress,
    OutboundMessage,
    SendResult,
    feedback_id_for,
    list_unsubscribe_headers,
    message_id_for,
)
from cadence.adapters.render import EmailContent
from cadence.adapters.retry import CircuitBreaker, RetryPolicy

if TYPE_CHECKING:
    from typing_extensions import Buffer


class _Connection(smtplib.SMTP):
    """smtplib.SMTP that remembers whether the message body went out (outcome unknown)."""

    in_data = False

    def data(self, msg: Buffer | str) -> tuple[int, bytes]:
        self.in_data = True
        return super().data(msg)


class _SslConnection(smtplib.SMTP_SSL):
    """Implicit-TLS twin of `_Connection`."""

    in_data = False

    def data(self, msg: Buffer | str) -> tuple[int, bytes]:
        self.in_data = True
        return super().data(msg)


class SmtpFailure(Exception):
    """A delivery attempt failed; `permanent` says whether retrying can help."""

    def __init__(self, reason: str, code: str, *, permanent: bool, unknown: bool = False) -> None:
        super().__init__(reason)
        self.code = code
        self.permanent = permanent
        self.unknown = unknown


class _VerbatimHeader(UnstructuredHeader, BaseHeader):
    """A header machines read as it is written (URLs, ids): folded only at its own spaces.

    Python's default folding turns a word longer than a line (any real unsubscribe URL)
    into RFC 2047 encoded-words, which mailbox providers do not decode in List-Unsubscribe
    or Feedback-ID: the one-click unsubscribe was lost. RFC 5322 allows 998 characters a
    line, so a long word stays whole on its line instead.
    """

    def fold(self, *, policy: Policy) -> str:
        value = str(self)
        if not value.isascii():
            return super().fold(policy=policy)  # only encoding can carry these
        width = policy.max_line_length or 0
        lines = [f"{self.name}:"]
        for index, word in enumerate(value.split(" ")):
            # A break goes only after a word, so no line is left empty or white space only.
            if width and index and word and len(lines[-1]) + 1 + len(word) > width:
                lines.append("")
            lines[-1] += " " + word
        return policy.linesep.join(lines) + policy.linesep


# Headers read by mailbox providers and receivers' tools rather than by people.
VERBATIM_HEADERS = (
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
    "X-Cadence-Idempotency-Key",
    "X-Cadence-Outbox-Id",
)
_HEADERS = HeaderRegistry()
# An enhanced status code of the addressing class (RFC 3463 5.1.x: bad mailbox, bad
# system, bad syntax), at the start of a reply's text.
_ADDRESSING = re.compile(r"\s*5\.1\.\d{1,3}\b")
# The code of a refused login (a 5xx to AUTH), which holds sends as a refused API key does.
AUTH_FAILED = "auth_failed"
for _name in VERBATIM_HEADERS:
    _HEADERS.map_to_type(_name, _VerbatimHeader)
# 7-bit bodies: a non-ASCII part is quoted-printable or base64, never raw 8-bit, which
# smtplib would send without the BODY=8BITMIME that RFC 6152 asks for (and which a server
# without 8BITMIME must not get at all).
_POLICY = default_policy.clone(header_factory=_HEADERS, cte_type="7bit")


def build_email(
    message: OutboundMessage, *, sender: str, feedback_id_sender: str = "cadence"
) -> EmailMessage:
    """The MIME message: multipart/alternative with text first, HTML second."""
    content = message.content
    assert isinstance(content, EmailContent)
    from_address = EmailAddress.parse(sender)
    domain = from_address.email.rpartition("@")[2] or "cadence.invalid"
    mime = EmailMessage(policy=_POLICY)
    mime["From"] = from_address.formatted()
    mime["To"] = EmailAddress(message.recipient, message.recipient_name).formatted()
    if message.reply_to:
        mime["Reply-To"] = EmailAddress.parse(message.reply_to).formatted()
    mime["Subject"] = content.subject
    mime["Date"] = formatdate(usegmt=True)
    mime["Message-ID"] = message_id_for(message, domain)
    for name, value in list_unsubscribe_headers(message).items():
        mime[name] = value
    mime["Feedback-ID"] = feedback_id_for(message, feedback_id_sender)
    mime["X-Cadence-Idempotency-Key"] = message.idempotency_key
    if message.outbox_id:
        mime["X-Cadence-Outbox-Id"] = message.outbox_id
    mime.set_content(content.text, subtype="plain", charset="utf-8")
    mime.add_alternative(content.html, subtype="html", charset="utf-8")
    return mime


class SmtpAdapter(AdapterBase):
    """One tenant's SMTP relay."""

    provider = "smtp"
    channels = frozenset({Channel.EMAIL})

    def __init__(
        self,
        config: SmtpConfig,
        *,
        default_sender: str | None = None,
        feedback_id_sender: str = "cadence",
        pool_size: int = 4,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(policy=policy, breaker=breaker, rng=rng)
        self.config = config
        self.default_sender = default_sender
        self.feedback_id_sender = feedback_id_sender
        self.pool_size = pool_size
        self._idle: list[smtplib.SMTP] = []
        self._lock = threading.Lock()
        self.connections_opened = 0
        self._limiter = trio.CapacityLimiter(pool_size)

    def __repr__(self) -> str:
        return (
            f"SmtpAdapter(host={self.config.host!r}, port={self.config.port}, "
            f"security={self.config.security!r})"
        )

    async def aclose(self) -> None:
        """QUIT every pooled connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            await trio.to_thread.run_sync(_quit, conn)

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send the messages over up to `pool_size` pooled connections at once."""
        results: dict[str, SendResult] = {}

        async def one(message: OutboundMessage) -> None:
            results.update(await self._drive([message], self._attempt))

        async with trio.open_nursery() as nursery:
            for message in messages:
                sender = message.sender or self.default_sender
                if not isinstance(message.content, EmailContent) or not sender:
                    results[message.idempotency_key] = SendResult.failed(
                        message,
                        self.provider,
                        "an email needs email content and a sender address",
                        code="invalid_message",
                    )
                    continue
                nursery.start_soon(one, message)
        return ordered(messages, results)

    async def _attempt(self, messages: list[OutboundMessage]) -> dict[str, SendResult] | Transient:
        (message,) = messages
        sender = message.sender or self.default_sender or ""
        try:
            mime = build_email(message, sender=sender, feedback_id_sender=self.feedback_id_sender)
        except ValueError as exc:  # an address no header can hold (a line break in it)
            return {
                message.idempotency_key: SendResult.failed(
                    message, self.provider, f"cannot write the email: {exc}",
                    code="invalid_message",
                )
            }  # fmt: skip
        envelope_from = EmailAddress.parse(sender).email
        try:
            await trio.to_thread.run_sync(
                self._deliver, mime, envelope_from, message.recipient, limiter=self._limiter
            )
        except SmtpFailure as failure:
            if failure.permanent and failure.code == AUTH_FAILED:
                # The login is refused, not this message: every send would be refused alike
                # until the password is fixed, so it waits as a refused API key does.
                held = held_for_account(message, self.provider, str(failure), KEY_REFUSED)
                return {message.idempotency_key: held}
            if failure.permanent:
                return {
                    message.idempotency_key: SendResult.failed(
                        message, self.provider, str(failure), code=failure.code
                    )
                }
            return Transient(str(failure), failure.code, unknown=failure.unknown)
        return {
            message.idempotency_key: SendResult.sent(message, self.provider, mime["Message-ID"])
        }

    # ------------------------------------------------------------------ worker-thread side

    def _connect(self) -> smtplib.SMTP:
        config = self.config
        context = ssl.create_default_context()
        if not config.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn: smtplib.SMTP
        if config.security == "tls":
            conn = _SslConnection(
                config.host,
                config.port,
                local_hostname=config.local_hostname,
                timeout=config.timeout,
                context=context,
            )
        else:
            conn = _Connection(
                config.host,
                config.port,
                local_hostname=config.local_hostname,
                timeout=config.timeout,
            )
        try:
            conn.ehlo()
            if config.security == "starttls" or (
                config.security == "auto" and conn.has_extn("starttls")
            ):
                conn.starttls(context=context)
                conn.ehlo()
            if config.username and config.password is not None:
                conn.login(config.username, config.password.reveal())
        except BaseException:
            conn.close()
            raise
        self.connections_opened += 1
        return conn

    def _deliver(self, mime: EmailMessage, envelope_from: str, recipient: str) -> None:
        """Send on a pooled connection; a stale pooled connection is replaced once."""
        for fresh in (False, True):
            conn = None
            if not fresh:
                with self._lock:
                    conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            try:
                if conn is None:
                    conn = self._connect()
                _reset(conn)
                conn.send_message(mime, from_addr=envelope_from, to_addrs=[recipient])
            except smtplib.SMTPServerDisconnected as exc:
                unknown = bool(conn is not None and getattr(conn, "in_data", False))
                if reused and not unknown:
                    continue  # the pooled connection had gone stale: open a new one
                raise SmtpFailure(
                    f"SMTP server closed the connection: {exc}",
                    "disconnected",
                    permanent=False,
                    unknown=unknown,
                ) from None
            except smtplib.SMTPAuthenticationError as exc:
                _quit(conn)
                # RFC 4954: 454 is a temporary failure (the server's credential store is
                # away), only 5xx a refused login.
                raise SmtpFailure(
                    f"SMTP login refused: {exc.smtp_code} {_text(exc.smtp_error)}".rstrip(),
                    AUTH_FAILED,
                    permanent=exc.smtp_code >= 500,
                ) from None
            except smtplib.SMTPNotSupportedError as exc:
                _quit(conn)
                raise SmtpFailure(
                    f"SMTP server does not support what the config asks: {exc}",
                    "smtp_not_supported",
                    permanent=True,
                ) from None
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                self._park(conn)
                # 5.1.x (RFC 3463: addressing) says the mailbox or address is bad, not this
                # message or the sender: as a hard bounce, the address is not tried again.
                rejected = code >= 500 and _ADDRESSING.match(_text(text)) is not None
                raise SmtpFailure(
                    f"recipient refused: {code} {_text(text)}",
                    ADDRESS_REJECTED if rejected else f"smtp_{code}",
                    permanent=code >= 500,
                ) from None
            except smtplib.SMTPResponseException as exc:
                self._park(conn)  # the server answered: the transaction was refused, not lost
                raise SmtpFailure(
                    f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}",
                    f"smtp_{exc.smtp_code}",
                    permanent=exc.smtp_code >= 500,
                ) from None
            except (OSError, smtplib.SMTPException) as exc:
                in_data = bool(conn is not None and getattr(conn, "in_data", False))
                _quit(conn)
                raise SmtpFailure(
                    f"SMTP connection failed: {type(exc).__name__}: {exc}",
                    "connect_failed",
                    permanent=False,
                    unknown=in_data,
                ) from None
            self._park(conn)
            return

    def _park(self, conn: smtplib.SMTP | None) -> None:
        """Return a healthy connection to the pool (or close it when the pool is full)."""
        if conn is None:
            return
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        _quit(conn)


def _reset(conn: smtplib.SMTP) -> None:
    """Clear per-message state on a (re)used connection."""
    if isinstance(conn, _Connection | _SslConnection):
        conn.in_data = False


def _quit(conn: smtplib.SMTP | None) -> None:
    if conn is None:
        return
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
