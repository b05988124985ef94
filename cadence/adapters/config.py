"""Where each tenant's providers live and how to log in, from a TOML file and the environment.

Credentials are wrapped in `Secret`, whose repr and str never show the value, so a config
object can be logged or printed in a traceback without leaking an API key.

Environment (the defaults every tenant inherits): CADENCE_EMAIL_PROVIDER (smtp|brevo),
CADENCE_SMTP_URL, CADENCE_BREVO_API_KEY, CADENCE_BREVO_BASE_URL, CADENCE_INFOBIP_API_KEY,
CADENCE_INFOBIP_BASE_URL, CADENCE_INFOBIP_SMS_SENDER, CADENCE_INFOBIP_WHATSAPP_SENDER,
CADENCE_WEBHOOK_SECRET. A tenant overrides any of them with CADENCE_TENANT_<TENANT>_<NAME>
(e.g. CADENCE_TENANT_ACME_BREVO_API_KEY) or a `[tenants.<name>]` table in the file.
"""

from __future__ import annotations

import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from cadence.adapters.render import ApprovedWhatsAppTemplate
from cadence.errors import CadenceError

SmtpSecurity = Literal["auto", "starttls", "tls", "none"]
EmailProvider = Literal["smtp", "brevo"]

BREVO_DEFAULT_BASE_URL = "https://api.brevo.com"


class ConfigError(CadenceError):
    """The adapter configuration is missing something or has a bad value."""


class Secret:
    """A credential that never shows itself in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The actual value, for the one place that sends it to the provider."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """An SMTP relay: host, port, TLS mode and optional login."""

    host: str
    port: int = 587
    security: SmtpSecurity = "auto"
    username: str | None = None
    password: Secret | None = None
    timeout: float = 30.0
    local_hostname: str | None = None
    verify_tls: bool = True

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> SmtpConfig:
        """`smtp://` (STARTTLS when offered), `smtp+starttls://` (required), `smtps://` (TLS),
        `smtp+plain://` (never TLS); user and password in the URL, `?verify=false` for
        self-signed test servers."""
        parts = urllib.parse.urlsplit(url)
        security: SmtpSecurity
        default_port = 587
        match parts.scheme:
            case "smtp":
                security = "auto"
            case "smtp+starttls":
                security = "starttls"
            case "smtps":
                security, default_port = "tls", 465
            case "smtp+plain":
                security, default_port = "none", 25
            case _:
                raise ConfigError(
                    "SMTP URL scheme must be smtp, smtps, smtp+starttls or smtp+plain, "
                    f"not {parts.scheme!r}"
                )
        if not parts.hostname:
            raise ConfigError("SMTP URL needs a host")
        query = urllib.parse.parse_qs(parts.query)
        verify = query.get("verify", ["true"])[0].lower() not in ("0", "false", "no")
        config = cls(
            host=parts.hostname,
            port=parts.port or default_port,
            security=security,
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=Secret(urllib.parse.unquote(parts.password)) if parts.password else None,
            verify_tls=verify,
        )
        return replace(config, **overrides) if overrides else config


@dataclass(frozen=True, slots=True)
class BrevoConfig:
    """Brevo's transactional email API."""

    api_key: Secret
    base_url: str = BREVO_DEFAULT_BASE_URL
    timeout: float = 15.0
    # Brevo takes up to 1000 message versions per request (2000 recipients in all), but it
    # deduplicates a request, not a message: a batch cut short by a crash is regrouped by
    # the engine that takes it over, under a new key, and sent again. One message per
    # request keeps each message's own key, so exactly once holds across crashes; a larger
    # batch_size trades that for fewer requests.
    batch_size: int = 1
    sandbox: bool = False


@dataclass(frozen=True, slots=True)
class InfobipConfig:
    """Infobip's SMS and WhatsApp APIs (each account has its own base URL)."""

    api_key: Secret
    base_url: str
    sms_sender: str = "InfoSMS"
    whatsapp_sender: str | None = None
    notify_url: str | None = None
    timeout: float = 15.0
    batch_size: int = 100


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """The webhook channel: its signing secret, and where `send webhook` templates go.

    `notify webhook "URL"` names its own target; a `send webhook TEMPLATE` step names only
    the template, so its rendered JSON is posted to `url` (the tenant's integration
    endpoint, `CADENCE_WEBHOOK_URL` or `[webhook] url`).
    """

    secret: Secret
    timeout: float = 10.0
    url: str | None = None


@dataclass(frozen=True, slots=True)
class TenantConfig:
    """Everything one tenant's sends need: which email provider, and each provider's settings."""

    email_provider: EmailProvider = "smtp"
    smtp: SmtpConfig | None = None
    brevo: BrevoConfig | None = None
    infobip: InfobipConfig | None = None
    webhook: WebhookConfig | None = None
    default_from: str | None = None
    feedback_id_sender: str = "cadence"
    costs: Mapping[str, Decimal] = field(default_factory=dict)
    currency: str = "USD"
    # Cadence WhatsApp template name -> the approved provider template used outside 24h.
    whatsapp_templates: Mapping[str, ApprovedWhatsAppTemplate] = field(default_factory=dict)


@dataclass(frozen=True)
class AdapterSettings:
    """The default tenant config plus per-tenant overrides."""

    default: TenantConfig = field(default_factory=TenantConfig)
    tenants: Mapping[str, TenantConfig] = field(default_factory=dict)

    def for_tenant(self, tenant: str) -> TenantConfig:
        """This tenant's config (the default when it has none of its own)."""
        return self.tenants.get(tenant, self.default)

    def __repr__(self) -> str:
        return f"AdapterSettings(default={self.default!r}, tenants={sorted(self.tenants)!r})"


# ------------------------------------------------------------------------------ loading


def _tenant_env_prefix(tenant: str) -> str:
    return "CADENCE_TENANT_" + re.sub(r"[^A-Z0-9]", "_", tenant.upper()) + "_"


def _layer(base: dict[str, Any], env: Mapping[str, str], prefix: str) -> dict[str, Any]:
    """Overlay CADENCE_* style variables (with `prefix`) onto a plain settings dict."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}

    def get(name: str) -> str | None:
        value = env.get(prefix + name)
        return value if value else None

    if value := get("EMAIL_PROVIDER"):
        out["email_provider"] = value
    if value := get("SMTP_URL"):
        out["smtp"] = {**out.get("smtp", {}), "url": value}
    for key, name in (("api_key", "BREVO_API_KEY"), ("base_url", "BREVO_BASE_URL")):
        if value := get(name):
            out["brevo"] = {**out.get("brevo", {}), key: value}
    for key, name in (
        ("api_key", "INFOBIP_API_KEY"),
        ("base_url", "INFOBIP_BASE_URL"),
        ("sms_sender", "INFOBIP_SMS_SENDER"),
        ("whatsapp_sender", "INFOBIP_WHATSAPP_SENDER"),
    ):
        if value := get(name):
            out["infobip"] = {**out.get("infobip", {}), key: value}
    if value := get("WEBHOOK_SECRET"):
        out["webhook"] = {**out.get("webhook", {}), "secret": value}
    if value := get("WEBHOOK_URL"):
        out["webhook"] = {**out.get("webhook", {}), "url": value}
    if value := get("FROM"):
        out["default_from"] = value
    return out


def _is_http_url(value: Any) -> bool:
    """Whether a configured endpoint is an absolute http(s) URL with a host."""
    if not isinstance(value, str):
        return False
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:  # a broken `[...]` host: no URL at all
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _optional_url(value: Any, where: str) -> str | None:
    """A URL the config may give (where webhooks go): an absolute http(s) one, or none."""
    if value is not None and not _is_http_url(value):
        raise ConfigError(f"{where} must be an http(s) URL, not {value!r}")
    return str(value) if value else None


def _base_url(value: Any, where: str) -> str:
    """A provider's API base URL, without its trailing `/`; a bare host is https.

    Infobip shows each account's base URL as `xxxxx.api.infobip.com`, without a scheme,
    and that is how it gets pasted: no scheme means https, as every provider's API is.
    """
    text = str(value).strip()
    if "://" not in text:
        text = "https://" + text
    if (
        not _is_http_url(text)
        or not urllib.parse.urlsplit(text).hostname
        or any(ch.isspace() for ch in text)
    ):
        raise ConfigError(f"{where}.base_url must be an http(s) URL or a host, not {value!r}")
    return text.rstrip("/")


def _secret(table: Mapping[str, Any], key: str, env: Mapping[str, str], where: str) -> Secret:
    """A secret from `key`, or from the variable named by `key_env` (keeps keys out of files)."""
    if table.get(f"{key}_env"):
        name = str(table[f"{key}_env"])
        value = env.get(name)
        if not value:
            raise ConfigError(f"{where}.{key}_env names ${name}, which is not set")
        return Secret(value)
    value = table.get(key)
    if not value:
        raise ConfigError(f"{where} needs {key}")
    return Secret(str(value))


def _api_key(table: Mapping[str, Any], env: Mapping[str, str], where: str) -> Secret:
    """A provider's API key, without the line break a key read from a file or a secret
    store brings: it goes in a request header, where httpx refuses one."""
    key = _secret(table, "api_key", env, where).reveal().strip()
    if not key:
        raise ConfigError(f"{where} needs api_key")
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ConfigError(f"{where}.api_key holds white space or control characters")
    return Secret(key)


# Infobip's SMS sender ids: alphanumeric 3 to 11 characters (what a handset shows, GSM
# 03.40's limit), numeric 3 to 14 digits. A longer one is rejected or cut by the networks.
SMS_SENDER_TEXT = (3, 11)
SMS_SENDER_DIGITS = (3, 14)


def _sms_sender(value: Any, where: str) -> str:
    """The Infobip SMS sender id, checked against the lengths Infobip allows."""
    sender = str(value).strip()
    digits = sender.removeprefix("+")
    if digits.isdigit():
        low, high, kind = *SMS_SENDER_DIGITS, "a numeric sender id, digits"
        size = len(digits)
    else:
        low, high, kind = *SMS_SENDER_TEXT, "an alphanumeric sender id, characters"
        size = len(sender)
    if not low <= size <= high:
        raise ConfigError(
            f"{where}.infobip.sms_sender {sender!r} is {size} long; {kind} {low} to {high} "
            "(CADENCE_INFOBIP_SMS_SENDER)"
        )
    return sender


def _build(data: Mapping[str, Any], env: Mapping[str, str], where: str) -> TenantConfig:
    provider = str(data.get("email_provider", "smtp"))
    if provider not in ("smtp", "brevo"):
        raise ConfigError(f"{where}.email_provider must be smtp or brevo, not {provider!r}")
    smtp = brevo = infobip = webhook = None
    if table := data.get("smtp"):
        if "url" in table:
            smtp = SmtpConfig.from_url(str(table["url"]))
        else:
            smtp = SmtpConfig(
                host=str(table["host"]),
                port=int(table.get("port", 587)),
                security=table.get("security", "auto"),
                username=table.get("username"),
                password=_secret(table, "password", env, f"{where}.smtp")
                if table.get("password") or table.get("password_env")
                else None,
            )
    if table := data.get("brevo"):
        brevo = BrevoConfig(
            api_key=_api_key(table, env, f"{where}.brevo"),
            base_url=_base_url(table.get("base_url", BREVO_DEFAULT_BASE_URL), f"{where}.brevo"),
            timeout=float(table.get("timeout", 15.0)),
            batch_size=max(1, min(1000, int(table.get("batch_size", 1)))),
            sandbox=bool(table.get("sandbox", False)),
        )
    if table := data.get("infobip"):
        if not table.get("base_url"):
            raise ConfigError(f"{where}.infobip needs base_url (CADENCE_INFOBIP_BASE_URL)")
        infobip = InfobipConfig(
            api_key=_api_key(table, env, f"{where}.infobip"),
            base_url=_base_url(table["base_url"], f"{where}.infobip"),
            sms_sender=_sms_sender(table.get("sms_sender", "InfoSMS"), where),
            whatsapp_sender=table.get("whatsapp_sender"),
            notify_url=_optional_url(table.get("notify_url"), f"{where}.infobip.notify_url"),
            timeout=float(table.get("timeout", 15.0)),
        )
    if table := data.get("webhook"):
        webhook = WebhookConfig(
            secret=_secret(table, "secret", env, f"{where}.webhook"),
            url=_optional_url(table.get("url"), f"{where}.webhook.url"),
        )
    costs = {str(k): Decimal(str(v)) for k, v in dict(data.get("costs", {})).items()}
    approved: dict[str, ApprovedWhatsAppTemplate] = {}
    for name, table in dict(data.get("whatsapp_templates", {})).items():
        if not isinstance(table, dict) or not table.get("name") or not table.get("language"):
            raise ConfigError(f"{where}.whatsapp_templates.{name} needs name and language")
        parameters = table.get("parameters", [])
        if not isinstance(parameters, list) or not all(isinstance(p, str) for p in parameters):
            raise ConfigError(f"{where}.whatsapp_templates.{name}.parameters must be strings")
        languages = table.get("languages", [])
        if not isinstance(languages, list) or not all(
            isinstance(code, str) and code.strip() for code in languages
        ):
            raise ConfigError(
                f"{where}.whatsapp_templates.{name}.languages must be language codes,"
                ' such as ["en", "es", "pt_BR"]'
            )
        approved[str(name)] = ApprovedWhatsAppTemplate(
            str(table["name"]), str(table["language"]), tuple(parameters),
            tuple(code.strip() for code in languages),
        )  # fmt: skip
    return TenantConfig(
        email_provider=provider,  # type: ignore[arg-type]
        smtp=smtp,
        brevo=brevo,
        infobip=infobip,
        webhook=webhook,
        default_from=data.get("default_from") or data.get("from"),
        feedback_id_sender=str(data.get("feedback_id_sender", "cadence")),
        costs=costs,
        currency=str(data.get("currency", "USD")),
        whatsapp_templates=approved,
    )


def load_settings(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> AdapterSettings:
    """Read the TOML file (if any), overlay the environment, and build every tenant's config."""
    environ = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read adapter config {path}: {exc}") from None
    default_raw = _layer(dict(raw.get("default", {})), environ, "CADENCE_")
    default = _build(default_raw, environ, "default")
    tenants: dict[str, TenantConfig] = {}
    names = set(raw.get("tenants", {}))
    names |= {
        m.group(1).lower()
        for key in environ
        if (
            m := re.match(
                r"CADENCE_TENANT_([A-Z0-9_]+?)_(EMAIL_PROVIDER|SMTP_URL|BREVO_|INFOBIP_|WEBHOOK_|FROM)",
                key,
            )
        )
    }
    for name in sorted(names):
        table = raw.get("tenants", {}).get(name, {})
        merged = {**default_raw, **{k: v for k, v in table.items()}}
        merged = _layer(merged, environ, _tenant_env_prefix(name))
        tenants[name] = _build(merged, environ, f"tenants.{name}")
    return AdapterSettings(default=default, tenants=tenants)
