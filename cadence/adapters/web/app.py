"""The service's ASGI application: routes, authentication and the engine calls behind them.

| route | who calls it | what it does |
|---|---|---|
| `GET /o/KEY.SIG.gif` | a mail client showing the email | `opened` for that send; a 1x1 GIF |
| `GET /c/KEY.SIG?u=URL` | a reader clicking a link | `clicked` with `url`; 302 to URL |
| `GET /u/KEY.SIG` | a reader following "unsubscribe" | a page asking to confirm |
| `POST /u/KEY.SIG` | that page, or a mail client (RFC 8058) | `unsubscribed` on the channel |
| `GET /p/KEY.SIG` | a reader following "preferences" | their channels, each on or off |
| `POST /p/KEY.SIG` | that page's form | `unsubscribed` / `resubscribed` per channel |
| `GET /v/KEY.SIG` | a reader following "view in browser" | the email, rendered again |
| `POST /webhooks/brevo`, `/webhooks/infobip` | the provider | `Engine.ingest_webhook` |
| `POST /events` | the product's backend | `Engine.push_events` (JSON, list or JSONL) |
| `POST /contacts` | the product's backend | `Engine.upsert_contacts` (JSON, list or JSONL) |
| `GET /contacts/ID/inbox` | the app | the contact's in-app messages |
| `POST /contacts/ID/inbox/read` | the app | marks them read |
| `PUT /contacts/ID/consents/CHANNEL` | the backend | consent; `pending`: a double opt-in |
| `GET /optin/TOKEN`, `POST /optin/TOKEN` | the person, from the confirmation | confirms it |
| `GET /dashboard` | people, in a browser | campaigns: state, enrollments, performance, charts |
| `GET /campaigns`, `GET /campaigns/NAME` | the product's backend | the same as JSON |
| `POST /campaigns` | an ops tool | deploys the Cadence source in the body (`campaigns.py`) |
| `POST /campaigns/NAME/ACTION` | an ops tool | launch, pause, resume, cancel, archive, clone ... |
| `GET /healthz` | a load balancer | 200 while the engine's store answers |

Links are checked by their signature before anything is written; a bad one gets a 404 page
and changes nothing, and a click whose target was not signed is never redirected. The
event, webhook, inbox, campaign and dashboard endpoints need the API token
(`Authorization: Bearer T`, a Basic password T, or `?token=T` for providers that can only
be given a URL); the dashboard asks a browser for it (Basic, any user name).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import parse_qs, quote, unquote

from cadence.adapters.config import Secret
from cadence.adapters.tracking import (
    PATHS,
    PIXEL_GIF,
    LinkKind,
    LinkSigner,
    opt_in_url,
    split_token,
)
from cadence.adapters.web import dashboard, pages
from cadence.adapters.web.campaigns import MOVES, CampaignsAPI
from cadence.adapters.web.coalesce import Coalesced
from cadence.adapters.web.http import Request, Response, json_body
from cadence.engine import preferences, suppress
from cadence.engine.runtime import Engine
from cadence.engine.store.sends import EVERY_CHANNEL
from cadence.errors import CadenceError

if TYPE_CHECKING:
    from cadence.engine.analytics import CampaignReport
    from cadence.engine.runtime import OutgoingMessage
    from cadence.engine.store.records import InvalidInput

# Bodies above this are refused before they are read whole (a webhook batch is far smaller).
MAX_BODY_BYTES = 5 * 1024 * 1024
PROVIDERS = ("brevo", "infobip")
Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger("cadence.web")


class WebViews(Protocol):
    """Renders an email again for its web version (`AdapterSink` does, as it sent it)."""

    async def web_view(self, message: OutgoingMessage) -> str | None:
        """The email's HTML, or None when the message has no web version."""
        ...


# Pages run no script and are nobody else's to frame; what they show is one tenant's (or one
# person's), so no cache keeps it, and their addresses (tokens, signed links) go to no
# other site.
PAGE_HEADERS = {
    "content-security-policy": (
        "script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none';"
        " frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


class DashboardRead(NamedTuple):
    """What the dashboard shows: `Engine.status()`, `Engine.report()`, and when they were read."""

    campaigns: list[dict[str, Any]]
    reports: list[CampaignReport]
    at: dt.datetime


class BodyTooLarge(Exception):
    """The request body passed MAX_BODY_BYTES."""


class ServiceApp:
    """The HTTP service over one engine (one tenant), as an ASGI application."""

    def __init__(
        self,
        engine: Engine,
        *,
        signer: LinkSigner | None = None,
        api_token: Secret | None = None,
        company: str | None = None,
        max_body: int = MAX_BODY_BYTES,
        views: WebViews | None = None,
        public_url: str | None = None,
    ) -> None:
        """Without `signer` the link routes answer 404; without `api_token` the API ones 403;
        without `views` (no channel adapters: nothing was rendered) web versions 404."""
        self.engine = engine
        self.signer = signer
        self.views = views
        # Where people reach the service (confirmation links); None: links are paths only.
        self.public_url = public_url.rstrip("/") if public_url else None
        self.campaigns = CampaignsAPI(engine)
        self.api_token = api_token
        self.company = company or engine.tenant
        self.max_body = max_body
        # Tabs that load the dashboard together share one reading of the store.
        self.dashboard_reads = Coalesced(self._dashboard_read)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point: lifespan events, then one HTTP request per call."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            request = await _read(scope, receive, self.max_body)
        except BodyTooLarge:
            await _respond(send, Response(413, f"body above {self.max_body} bytes\n".encode()))
            return
        try:
            response = await self.handle(request)
        except Exception:
            # A failure of the store or the engine: the caller retries (providers do), and
            # nothing was half-written (each engine call is one transaction).
            log.exception("%s %s failed", request.method, request.path)
            response = Response(500, b"internal error; nothing was written\n")
        await _respond(send, response)

    async def handle(self, request: Request) -> Response:
        """Route one request to its handler."""
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        method = "GET" if request.method == "HEAD" else request.method
        match (method, parts):
            case ("GET", ["healthz"]):
                return await self._health()
            case ("GET", ["dashboard"]):
                return await self._authorized(request, self._dashboard, challenge=True)
            case (_, ["campaigns", *_]) if len(parts) <= 3:
                return await self._authorized(
                    request, lambda: self._campaign_route(method, parts, request)
                )
            case ("GET", ["o", token]):
                return await self._open(token)
            case ("GET", ["c", token]):
                return await self._click(token, request)
            case ("GET", ["u", token]):
                return await self._unsubscribe_page(token)
            case ("POST", ["u", token]):
                return await self._unsubscribe(token)
            case ("GET", ["p", token]):
                return await self._preferences(token)
            case ("POST", ["p", token]):
                return await self._save_preferences(token, request)
            case ("GET", ["v", token]):
                return await self._web_view(token)
            case ("POST", ["webhooks", provider]):
                return await self._authorized(request, lambda: self._webhook(provider, request))
            case ("POST", ["events"]):
                return await self._authorized(request, lambda: self._events(request))
            case ("POST", ["contacts"]):
                return await self._authorized(request, lambda: self._contacts(request))
            case ("GET", ["contacts", contact, "inbox"]):
                return await self._authorized(request, lambda: self._inbox(contact, request))
            case ("POST", ["contacts", contact, "inbox", "read"]):
                return await self._authorized(request, lambda: self._read(contact, request))
            case ("GET", ["contacts", contact, "consents"]):
                return await self._authorized(request, lambda: self._consents(contact))
            case ("PUT", ["contacts", contact, "consents", channel]):
                return await self._authorized(
                    request, lambda: self._set_consent(contact, channel, request)
                )
            case ("GET", ["optin", token]):
                return await self._opt_in_page(token)
            case ("POST", ["optin", token]):
                return await self._confirm_opt_in(token)
        if _known_path(parts):
            return Response(405, f"{request.method} is not allowed here\n".encode())
        return Response(404, b"not found\n")

    # ------------------------------------------------------------------ links in messages

    def _link(self, kind: LinkKind, token: str, target: str = "") -> str | None:
        """The send key of a correctly signed link, else None."""
        if self.signer is None:
            return None
        split = split_token(token, ".gif" if kind == "open" else "")
        if split is None:
            return None
        key, signature = split
        if not self.signer.verify(kind, self.engine.tenant, key, signature, target):
            return None
        return key

    async def _open(self, token: str) -> Response:
        key = self._link("open", token)
        if key is None:
            return Response(404, b"not found\n")
        if not await self._track("opened", key, {"via": "pixel"}):
            return Response(404, b"not found\n")
        return Response(
            200, PIXEL_GIF, "image/gif", {"cache-control": "no-store, no-cache, max-age=0"}
        )

    async def _click(self, token: str, request: Request) -> Response:
        target = request.param("u")
        key = self._link("click", token, target or "")
        if key is None or not target:
            return Response.html(404, pages.broken_link(self.company))
        # The target was signed by this service: the reader goes there even when the send is
        # gone from the store (nothing to record then).
        await self._track("clicked", key, {"url": target})
        # A header carries ASCII only: a signed target with other characters goes escaped.
        location = quote(target, safe=":/?#[]@!$&'()*+,;=%~")
        return Response(
            302, b"", headers={"location": location, "referrer-policy": "no-referrer",
                               "cache-control": "no-store"},
        )  # fmt: skip

    async def _unsubscribe_page(self, token: str) -> Response:
        key = self._link("unsubscribe", token)
        # A send the store lacks: the button could only fail, so the page says so at once.
        if key is None or self.signer is None or await self.engine.send_contact(key) is None:
            return Response.html(404, pages.broken_link(self.company))
        # The same send's preference page, for someone who wants fewer messages, not none.
        signature = self.signer.sign("preferences", self.engine.tenant, key)
        choose = f"../{PATHS['preferences']}/{quote(key, safe='')}.{signature}"
        # A GET only asks: mail scanners follow links, and must not unsubscribe anyone.
        return Response.html(200, pages.confirm_unsubscribe(self.company, choose))

    async def _unsubscribe(self, token: str) -> Response:
        key = self._link("unsubscribe", token)
        message = None if key is None else await self.engine.sent_message(key)
        if key is None or message is None:
            return Response.html(404, pages.broken_link(self.company))
        # Stored again, a second press would fire `when unsubscribed` and count in scores
        # and `count(unsubscribed, D)` twice: once off, the person stays off, with one event.
        # The engine decides on the channels as they stand when it stores, so a mail client's
        # one-click and the button pressed at once (two workers) store one between them.
        channel = message.channel

        def unsubscribe(choices: list[preferences.ChannelChoice]) -> list[tuple[str, str]]:
            if preferences.opted_out(choices, channel):
                return []
            return [(suppress.UNSUBSCRIBED, channel)]

        await self.engine.change_channels(message.contact_id, key, unsubscribe, via="link")
        return Response.html(200, pages.unsubscribed(self.company))

    async def _preference_subject(
        self, token: str
    ) -> tuple[str, str, list[preferences.ChannelChoice]] | None:
        """A preference link's send key, its contact and their channels; None when the link
        is bad or names a send or contact the store lacks."""
        key = self._link("preferences", token)
        contact = None if key is None else await self.engine.send_contact(key)
        choices = None if contact is None else await self.engine.preferences(contact)
        if key is None or contact is None or choices is None:
            return None
        return key, contact, choices

    async def _preferences(self, token: str) -> Response:
        subject = await self._preference_subject(token)
        if subject is None:
            return Response.html(404, pages.broken_link(self.company))
        return Response.html(200, pages.preferences(self.company, subject[2]))

    async def _save_preferences(self, token: str, request: Request) -> Response:
        subject = await self._preference_subject(token)
        if subject is None:
            return Response.html(404, pages.broken_link(self.company))
        key, contact, choices = subject
        form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        wanted = set(form.get("channel", []))

        def chosen(now_shown: list[preferences.ChannelChoice]) -> list[tuple[str, str]]:
            # From the channels as they stand when stored: the same form saved twice at once
            # (a double submit reaching two workers) changes them once.
            if form.get("action") == ["everything-off"]:
                return [(suppress.UNSUBSCRIBED, EVERY_CHANNEL)]
            return preferences.changes(now_shown, wanted)

        after = await self.engine.change_channels(contact, key, chosen, via=preferences.VIA)
        choices = choices if after is None else after
        return Response.html(200, pages.preferences(self.company, choices, saved=True))

    async def _web_view(self, token: str) -> Response:
        key = self._link("view", token)
        message = None if key is None else await self.engine.sent_message(key)
        html = None
        if message is not None and self.views is not None:
            html = await self.views.web_view(message)
        if html is None:
            return Response.html(404, pages.no_web_version(self.company))
        return Response(200, html.encode(), "text/html; charset=utf-8", dict(PAGE_HEADERS))

    async def _track(self, name: str, key: str, properties: Mapping[str, Any]) -> bool:
        """The event for a send: the store fills in its channel, template and campaign.

        False when the send is not (or no longer) in the store: there is nobody to record it
        for, and nothing is written.
        """
        contact = await self.engine.send_contact(key)
        if contact is None:
            return False
        await self.engine.push_event(
            {"contact": contact, "name": name, "properties": {"send": key, **properties}}
        )
        return True

    # ------------------------------------------------------------------ the API

    async def _authorized(
        self,
        request: Request,
        handler: Callable[[], Awaitable[Response]],
        *,
        challenge: bool = False,
    ) -> Response:
        """`handler`'s answer for a caller with the API token; with `challenge`, a browser
        without it is asked for it (Basic authentication: the token as the password)."""
        if self.api_token is None:
            return Response.json(403, {"error": "the API is off: set CADENCE_API_TOKEN"})
        presented = _presented_token(request)
        if presented is None or not hmac.compare_digest(
            presented.encode(), self.api_token.reveal().encode()
        ):
            refused = Response.json(
                401, {"error": "a valid API token is needed (Authorization: Bearer TOKEN)"}
            )
            if challenge:
                refused.headers["www-authenticate"] = 'Basic realm="Cadence", charset="UTF-8"'
            return refused
        return await handler()

    async def _dashboard(self) -> Response:
        campaigns, reports, now = await self.dashboard_reads()
        page = dashboard.dashboard(self.company, now, campaigns, reports)
        return Response(200, page.encode(), "text/html; charset=utf-8", dict(PAGE_HEADERS))

    async def _dashboard_read(self) -> DashboardRead:
        """What the dashboard shows, and when it was read."""
        campaigns = await self.engine.status()
        reports = await self.engine.report()
        return DashboardRead(campaigns, reports, self.engine.now())

    async def _campaign_route(self, method: str, parts: list[str], request: Request) -> Response:
        answer = await self.campaigns.handle(method, parts, request)
        if answer is not None:
            return answer
        if method == "POST" and len(parts) == 3:
            actions = ", ".join((*MOVES, "clone", "approve"))
            return Response.json(404, {"error": f"no action {parts[2]!r}; one of {actions}"})
        return Response(405, f"{request.method} is not allowed here\n".encode())

    async def _webhook(self, provider: str, request: Request) -> Response:
        from cadence.adapters.inbound import InvalidWebhook

        if provider not in PROVIDERS:
            return Response.json(404, {"error": f"no webhooks from {provider!r}",
                                       "providers": list(PROVIDERS)})  # fmt: skip
        payload, problem = json_body(request.body)
        if problem is not None:
            return Response.json(400, {"error": f"{provider} webhook: {problem}"})
        try:
            report = await self.engine.ingest_webhook(provider, payload)
        except InvalidWebhook as exc:
            return Response.json(400, {
                "error": f"{provider} webhook: {len(exc.problems)} problem(s), nothing written",
                "problems": [{"path": p.path, "reason": p.reason} for p in exc.problems],
            })  # fmt: skip
        return Response.json(200, report.as_dict())

    async def _events(self, request: Request) -> Response:
        from cadence.engine.store.records import InvalidInput

        events, problem = _objects_body(request, "event")
        if problem is not None:
            return Response.json(400, {"error": problem})
        try:
            pushed = await self.engine.push_events_counted(events)
        except InvalidInput as exc:
            return _refused(exc, "event")
        return Response.json(202, {
            "stored": pushed.stored, "duplicates": pushed.duplicates, "enrolled": pushed.enrolled,
        })  # fmt: skip

    async def _contacts(self, request: Request) -> Response:
        from cadence.engine.store.records import InvalidInput

        contacts, problem = _objects_body(request, "contact")
        if problem is not None:
            return Response.json(400, {"error": problem})
        try:
            report = await self.engine.upsert_contacts(contacts)
        except InvalidInput as exc:
            return _refused(exc, "contact")
        return Response.json(200, {"created": report.created, "updated": report.updated})

    async def _inbox(self, contact: str, request: Request) -> Response:
        unread = (request.param("unread") or "").lower() in ("1", "true", "yes")
        try:
            limit = int(request.param("limit") or 50)
            messages = await self.engine.inbox(contact, unread_only=unread, limit=limit)
        except ValueError:
            return Response.json(400, {"error": "limit: expected a whole number"})
        except CadenceError as exc:
            return Response.json(400, {"error": str(exc)})
        return Response.json(200, {"contact": contact, "messages": messages})

    async def _read(self, contact: str, request: Request) -> Response:
        payload, problem = json_body(request.body)
        if problem is not None:
            return Response.json(400, {"error": problem})
        ids = payload.get("ids") if isinstance(payload, dict) else None
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            return Response.json(400, {"error": 'expected {"ids": [message ids]}'})
        marked = await self.engine.mark_inbox_read(contact, ids)
        return Response.json(200, {"contact": contact, "marked": marked})

    async def _consents(self, contact: str) -> Response:
        return Response.json(
            200, {"contact": contact, "consents": await self.engine.consents(contact)}
        )

    async def _set_consent(self, contact: str, channel: str, request: Request) -> Response:
        payload, problem = json_body(request.body)
        status = payload.get("status") if isinstance(payload, dict) else None
        source = payload.get("source") if isinstance(payload, dict) else None
        if problem is not None or not isinstance(status, str):
            return Response.json(400, {"error": problem or 'expected {"status": "granted"}'})
        if source is not None and not isinstance(source, str):
            return Response.json(400, {"error": "source: expected text"})
        try:
            change = await self.engine.set_consent(contact, channel, status, source=source)
        except CadenceError as exc:
            return Response.json(400, {"error": str(exc)})
        answer: dict[str, Any] = {"contact": contact, "channel": channel, "status": change.status}
        if change.token is not None:
            # The person confirms through this link; the caller sends it to them.
            answer["confirm_url"] = opt_in_url(self.public_url, change.token)
        return Response.json(200, answer)

    async def _opt_in_page(self, token: str) -> Response:
        waiting = await self.engine.pending_opt_in(token)
        if waiting is None:
            return Response.html(404, pages.opt_in_not_valid(self.company))
        if waiting.expired:
            return Response.html(410, pages.opt_in_expired(self.company))
        # A GET only asks, as for unsubscribes: scanners follow links.
        return Response.html(200, pages.confirm_opt_in(self.company, waiting.channel))

    async def _confirm_opt_in(self, token: str) -> Response:
        confirmed = await self.engine.confirm_opt_in(token)
        if confirmed is None:
            return Response.html(404, pages.opt_in_not_valid(self.company))
        if confirmed.expired:
            return Response.html(410, pages.opt_in_expired(self.company))
        return Response.html(200, pages.opted_in(self.company, confirmed.channel))

    async def _health(self) -> Response:
        await self.engine.next_due()  # a query: the store answers, or this raises (500)
        return Response.json(200, {"status": "ok", "tenant": self.engine.tenant})


def _known_path(parts: list[str]) -> bool:
    """Whether the path is one of the routes (under some other method)."""
    shape = (parts[0] if parts else "", len(parts))
    return shape in {("healthz", 1), ("dashboard", 1), ("campaigns", 1), ("campaigns", 2),
                     ("campaigns", 3), ("o", 2), ("c", 2),
                     ("u", 2), ("p", 2), ("v", 2), ("webhooks", 2), ("events", 1),
                     ("contacts", 1), ("contacts", 3), ("contacts", 4), ("optin", 2)}  # fmt: skip


def _presented_token(request: Request) -> str | None:
    """The API token a caller sent: bearer, Basic password, or the `token` parameter."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return request.param("token")


def _refused(exc: InvalidInput, what: str) -> Response:
    """400 naming every bad event or contact (`what`) by number, field and reason."""
    return Response.json(400, {
        "error": f"{len(exc.problems)} problem(s), nothing written",
        "problems": [{what: p.row, "field": p.column, "reason": p.reason} for p in exc.problems],
    })  # fmt: skip


def _objects_body(request: Request, what: str) -> tuple[list[dict[str, Any]], str | None]:
    """Events or contacts (`what`) from a JSON object, a JSON list of objects, or JSON lines."""
    if "ndjson" in request.headers.get("content-type", "") or "jsonl" in request.headers.get(
        "content-type", ""
    ):
        events: list[Any] = []
        # Split as bytes: each line is decoded strictly (a byte that is not UTF-8 is refused,
        # as in a JSON body, not stored as U+FFFD), and a U+2028 inside a JSON string, which
        # `str.splitlines` takes for a line break, stays in its string.
        for number, line in enumerate(request.body.splitlines(), 1):
            if not line.strip():
                continue
            item, problem = json_body(line)
            if problem is not None:
                return [], f"line {number}: {problem}"
            events.append(item)
    else:
        payload, problem = json_body(request.body)
        if problem is not None:
            return [], problem
        events = payload if isinstance(payload, list) else [payload]
    for number, item in enumerate(events, 1):
        if not isinstance(item, dict):
            return [], f"{what} {number}: expected a JSON object, got {type(item).__name__}"
    if not events:
        return [], f"no {what}s in the body"
    return events, None


async def _read(scope: Scope, receive: Receive, limit: int) -> Request:
    """The request with its whole body (refused past `limit`)."""
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    # The raw path, split before it is decoded: a contact id may hold an escaped "/".
    raw = scope.get("raw_path") or scope["path"].encode()
    path = raw.decode("latin-1").partition("?")[0]
    return Request(scope["method"], path, query, headers, b"".join(chunks))


async def _respond(send: Send, response: Response) -> None:
    headers = [(b"content-type", response.content_type.encode())]
    headers += [(k.encode(), v.encode("latin-1")) for k, v in response.headers.items()]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: the engine is opened and closed by whoever runs the app."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
