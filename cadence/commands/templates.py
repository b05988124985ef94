"""`cadence preview` and `cadence send-test`: see a template as one contact will, then send it.

`preview FILE TEMPLATE --contact JSON_OR_FILE` renders a template of a checked .cadence file
in the sandbox exactly as a send would (locale chosen from the contact, Babel filters,
strict variables) and prints the subject, preheader, text and, for SMS, the encoding and
segment count. `send-test FILE TEMPLATE --to ADDRESS` renders it and sends one message
through the adapter the tenant's config names (CADENCE_* variables or `--config`).
Exit 0 on success, 1 when the file, the render or the send fails, 2 for usage mistakes.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cadence.commands.options import add_tenant
from cadence.errors import CadenceError, did_you_mean

# Rendering and the adapters pull in Jinja2, httpx and Trio: `cadence --help` and
# `cadence check` should not pay for them, so the handlers import them when they run.
if TYPE_CHECKING:
    from cadence.adapters.message import Channel
    from cadence.adapters.render import ApprovedWhatsAppTemplate, RenderedContent
    from cadence.dsl.compiled import CompiledCampaign, CompiledTemplate

SAMPLE_CONTACT: dict[str, Any] = {"id": "preview", "first_name": "Alex", "last_name": "Doe"}


class UsageError(CadenceError):
    """A command-line mistake (exit 2)."""


def register(subparsers: Any) -> None:
    """Add the `preview` and `send-test` subcommands."""
    preview = subparsers.add_parser(
        "preview",
        help="render a template for one contact and print it",
        description=(
            "Render TEMPLATE from a .cadence FILE for one contact, in the same sandbox the "
            "engine uses, and print subject, preheader and text (SMS: encoding and segments)."
        ),
    )
    _common(preview)
    preview.add_argument("--html", action="store_true", help="also print the HTML part")
    preview.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default text)"
    )
    preview.set_defaults(handler=run_preview)

    send = subparsers.add_parser(
        "send-test",
        help="render a template and send it once through the configured adapter",
        description=(
            "Render TEMPLATE for a contact and send it to ADDRESS (an email address, a phone "
            "number or a webhook URL) through the provider configured for the tenant."
        ),
    )
    _common(send)
    send.add_argument("--to", required=True, metavar="ADDRESS", help="where to send the test")
    send.add_argument(
        "--config", metavar="TOML", help="adapter config file (default: CADENCE_* variables only)"
    )
    add_tenant(send, "whose providers to use")
    send.add_argument("--from", dest="sender", metavar="SENDER", help="override the sender")
    send.set_defaults(handler=run_send_test)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the .cadence file declaring the template")
    parser.add_argument("template", metavar="TEMPLATE", help="the template's name")
    parser.add_argument(
        "--contact",
        metavar="JSON_OR_FILE",
        help="the contact: a JSON object or a .json file (default: a sample contact)",
    )
    parser.add_argument("--event", metavar="JSON_OR_FILE", help="the trigger event's payload")
    parser.add_argument(
        "--company", metavar="JSON_OR_FILE", help="tenant/company variables (name, currency ...)"
    )
    parser.add_argument("--locale", help="render in this locale instead of contact.locale")


# ------------------------------------------------------------------------------ shared steps


def json_object_arg(value: str | None, what: str) -> dict[str, Any]:
    """`--contact`, `--company`, `--event`: a JSON object inline or in a file (every command)."""
    if value is None:
        return {}
    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise UsageError(f"--{what}: {value!r} is neither a JSON object nor a file")
        text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--{what}: not valid JSON ({exc})") from None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        raise UsageError(f"--{what}: expected a JSON object")
    return data


def find_template(file: str, name: str) -> tuple[CompiledTemplate, CompiledCampaign | None]:
    """The compiled template `name` of FILE, and a campaign that sends it (for `from`)."""
    from cadence.dsl.compiler import check_and_compile

    result = check_and_compile([file])
    for campaign in result.campaigns:
        if name in campaign.templates:
            return campaign.templates[name], campaign
    template = _compile_unused(result.workspace, name)
    if template is not None:
        return template, None
    known: set[str] = set()
    for campaign in result.campaigns:
        known.update(campaign.templates)
    known.update(_declared_names(result.workspace))
    hint = did_you_mean(name, known)
    raise UsageError(f"no template `{name}` in {file}" + (f"; {hint}" if hint else ""))


def _declared_names(workspace: Any) -> set[str]:
    if workspace is None:
        return set()
    from cadence.dsl.symbols import collect_symbols

    return set(collect_symbols(workspace).templates)


def _compile_unused(workspace: Any, name: str) -> CompiledTemplate | None:
    """A declared template that no campaign sends yet, compiled the way the compiler would."""
    if workspace is None:
        return None
    from cadence.dsl import compiler
    from cadence.dsl.symbols import collect_symbols

    symbols = collect_symbols(workspace)
    if name not in symbols.templates:
        return None
    context = compiler._Context(workspace, symbols, compiler._root_dir(workspace))
    template = compiler._TemplateCompiler(context, symbols.templates[name]).compile()
    if context.errors:
        from cadence.errors import CadenceCheckError

        raise CadenceCheckError(context.errors)
    return template


def _render(
    args: argparse.Namespace,
    to: str | None = None,
    approved: Mapping[str, ApprovedWhatsAppTemplate] | None = None,
) -> tuple[CompiledTemplate, CompiledCampaign | None, RenderedContent, dict[str, Any]]:
    from cadence.adapters.render import RenderContext, TemplateRenderer

    template, campaign = find_template(args.file, args.template)
    contact = json_object_arg(args.contact, "contact") if args.contact else dict(SAMPLE_CONTACT)
    if to is not None:
        field = {"email": "email", "sms": "phone", "whatsapp": "phone"}.get(template.channel)
        if field:
            contact.setdefault(field, _recipient(template.channel, to))
    context = RenderContext(
        contact=contact,
        tenant=_company(args),
        campaign={"name": campaign.name, "display_name": campaign.display_name} if campaign else {},
        event=json_object_arg(args.event, "event"),
        unsubscribe_url="https://example.invalid/unsubscribe/preview",
        preferences_url="https://example.invalid/preferences/preview",
        view_in_browser_url="https://example.invalid/view/preview",
        confirm_url="https://example.invalid/optin/preview",
        locale=args.locale,
    )
    spec = (approved or {}).get(template.name) if template.channel == "whatsapp" else None
    return template, campaign, TemplateRenderer().render(template, context, approved=spec), contact


def _company(args: argparse.Namespace) -> dict[str, Any]:
    """`company` as a send gives it (`cadence.adapters.sink`): the tenant's id and name (its
    id: a tenant is named only in the store, which a preview does not open), then what
    `--company` gives."""
    from cadence.engine.tenants import DEFAULT_TENANT

    tenant = getattr(args, "tenant", None) or DEFAULT_TENANT
    return {"id": tenant, "name": tenant, **json_object_arg(args.company, "company")}


def _describe(template: CompiledTemplate, content: RenderedContent, html: bool) -> str:
    from cadence.adapters.render import EmailContent, SmsContent, WebhookContent, WhatsAppContent

    lines = [f"template {template.name} ({template.channel}, locale {content.locale})"]
    if isinstance(content, EmailContent):
        lines.append(f"Subject:   {content.subject}")
        if content.preheader:
            lines.append(f"Preheader: {content.preheader}")
        lines += ["", "--- text/plain ---", content.text.rstrip("\n")]
        if html:
            lines += ["", "--- text/html ---", content.html.rstrip("\n")]
    elif isinstance(content, SmsContent):
        plural = "" if content.segments == 1 else "s"
        lines.append(
            f"SMS: {content.encoding}, {content.units} characters, "
            f"{content.segments} segment{plural}"
        )
        lines += ["", content.text]
    elif isinstance(content, WhatsAppContent):
        lines += ["", content.text]
        if content.approved is not None:
            params = ", ".join(content.approved.parameters)
            lines.append(
                f"(approved template {content.approved.name} [{content.approved.language}]: "
                f"{params})"
            )
    elif isinstance(content, WebhookContent):
        lines += ["", json.dumps(dict(content.payload), indent=2, ensure_ascii=False)]
    return "\n".join(lines)


def _as_json(template: CompiledTemplate, content: RenderedContent) -> str:
    from dataclasses import asdict

    data = {"template": template.name, "channel": template.channel, **asdict(content)}
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)


def _recipient(channel: str, to: str) -> str:
    """`--to` as the store keeps a contact's address (a phone in E.164 whatever way it is
    written, `+44 (0)20 ...` or `0044 20 ...`), so the provider gets the number meant."""
    from cadence.engine.store.records import normalize_email, normalize_phone

    normalize = {"email": normalize_email, "sms": normalize_phone, "whatsapp": normalize_phone}
    try:
        return normalize[channel](to) if channel in normalize else to
    except ValueError as exc:
        raise UsageError(f"--to: {exc}") from None


def _fail(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 2 if isinstance(error, UsageError) else 1


# ------------------------------------------------------------------------------ handlers


def run_preview(args: argparse.Namespace) -> int:
    """The `preview` handler."""
    try:
        template, _campaign, content, _contact = _render(args)
    except (CadenceError, OSError) as error:
        return _fail(error)
    if args.format == "json":
        print(_as_json(template, content))
    else:
        print(_describe(template, content, args.html))
    return 0


def run_send_test(args: argparse.Namespace) -> int:
    """The `send-test` handler."""
    import trio

    from cadence.adapters.config import ConfigError, load_settings
    from cadence.adapters.message import Channel, OutboundMessage, SendStatus
    from cadence.adapters.outbound import Outbound
    from cadence.adapters.render import TemplateRenderError

    try:
        settings = load_settings(args.config)
        approved = settings.for_tenant(args.tenant).whatsapp_templates
        template, campaign, content, contact = _render(args, to=args.to, approved=approved)
    except (CadenceError, OSError) as error:
        return _fail(error)
    except TemplateRenderError as error:  # pragma: no cover - CadenceError above
        return _fail(error)
    channel = _channel(template.channel)
    if channel is None:
        return _fail(UsageError(f"`{template.channel}` templates cannot be test-sent"))
    sender = args.sender or (campaign.settings.from_ if campaign else None)
    if channel is Channel.EMAIL:
        sender = sender or settings.for_tenant(args.tenant).default_from
    message = OutboundMessage(
        idempotency_key=f"send-test:{template.name}:{uuid.uuid4()}",
        tenant=args.tenant,
        channel=channel,
        recipient=_recipient(template.channel, args.to),
        recipient_name=_name(contact),
        content=content,
        sender=sender if channel is Channel.EMAIL or args.sender else None,
        reply_to=campaign.settings.reply_to if campaign else None,
        template=template.name,
        campaign_id=campaign.name if campaign else None,
        tags=("send-test",),
    )

    async def send() -> int:
        outbound = Outbound(settings)
        try:
            result = await outbound.send(message)
        finally:
            await outbound.aclose()
        if result.status is SendStatus.SENT:
            print(
                f"sent {template.name} to {args.to} via {result.provider}"
                + (f" (id {result.provider_message_id})" if result.provider_message_id else "")
            )
            return 0
        when = f", retry at {result.retry_at:%Y-%m-%d %H:%M:%S}Z" if result.retry_at else ""
        print(f"not sent ({result.status.value}{when}): {result.error}", file=sys.stderr)
        return 1

    try:
        return trio.run(send)
    except ConfigError as error:
        return _fail(error)


def _channel(name: str) -> Channel | None:
    from cadence.adapters.message import Channel

    try:
        channel = Channel(name)
    except ValueError:
        return None
    # An inbox message is delivered into the engine's store, to a contact, not to an address.
    return None if channel is Channel.INBOX else channel


def _name(contact: Mapping[str, Any]) -> str | None:
    parts = [str(contact[k]) for k in ("first_name", "last_name") if contact.get(k)]
    return " ".join(parts) or None
