"""Adapter configuration from environment and TOML; secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.adapters.brevo import BrevoAdapter
from cadence.adapters.config import ConfigError, Secret, SmtpConfig, load_settings


def test_environment_defaults_and_tenant_overrides() -> None:
    env = {
        "CADENCE_EMAIL_PROVIDER": "brevo",
        "CADENCE_BREVO_API_KEY": "xkeysib-default",
        "CADENCE_BREVO_BASE_URL": "http://127.0.0.1:9999/",
        "CADENCE_INFOBIP_API_KEY": "ib-default",
        "CADENCE_INFOBIP_BASE_URL": "https://abc.api.infobip.com",
        "CADENCE_SMTP_URL": "smtp+starttls://mailer:p%40ss@mail.acme.test:2525",
        "CADENCE_TENANT_GLOBEX_BREVO_API_KEY": "xkeysib-globex",
        "CADENCE_TENANT_GLOBEX_FROM": "Globex <hi@globex.test>",
    }
    settings = load_settings(env=env)
    default = settings.default
    assert default.email_provider == "brevo"
    assert default.brevo is not None and default.brevo.api_key.reveal() == "xkeysib-default"
    assert default.brevo.base_url == "http://127.0.0.1:9999"
    assert default.infobip is not None and default.infobip.base_url == "https://abc.api.infobip.com"
    assert default.smtp == SmtpConfig(
        host="mail.acme.test",
        port=2525,
        security="starttls",
        username="mailer",
        password=Secret("p@ss"),
    )
    globex = settings.for_tenant("globex")
    assert globex.brevo is not None and globex.brevo.api_key.reveal() == "xkeysib-globex"
    assert globex.default_from == "Globex <hi@globex.test>"
    assert globex.infobip == default.infobip  # inherited
    assert settings.for_tenant("unknown") is default


def test_secrets_never_show(tmp_path: Path) -> None:
    env = {
        "CADENCE_BREVO_API_KEY": "xkeysib-very-secret",
        "CADENCE_SMTP_URL": "smtps://u:hunter2@h",
    }
    settings = load_settings(env=env)
    shown = repr(settings) + str(settings.default) + repr(settings.default.smtp)
    assert settings.default.brevo is not None
    shown += repr(BrevoAdapter(settings.default.brevo))
    assert "very-secret" not in shown and "hunter2" not in shown
    assert "Secret('***')" in shown


def test_toml_file_with_key_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "adapters.toml"
    path.write_text(
        """
[default]
email_provider = "smtp"
from = "Acme <hello@acme.test>"
[default.smtp]
url = "smtp+plain://127.0.0.1:2525"
[default.costs]
email = "0.001"
sms = 0.05

[tenants.initech]
email_provider = "brevo"
[tenants.initech.brevo]
api_key_env = "INITECH_BREVO"
""",
        encoding="utf-8",
    )
    settings = load_settings(path, env={"INITECH_BREVO": "xkeysib-initech"})
    assert settings.default.smtp is not None and settings.default.smtp.security == "none"
    assert str(settings.default.costs["sms"]) == "0.05"
    initech = settings.for_tenant("initech")
    assert initech.email_provider == "brevo" and initech.default_from == "Acme <hello@acme.test>"
    assert initech.brevo is not None and initech.brevo.api_key.reveal() == "xkeysib-initech"
    with pytest.raises(ConfigError, match="INITECH_BREVO"):
        load_settings(path, env={})


def test_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="scheme"):
        SmtpConfig.from_url("http://x")
    with pytest.raises(ConfigError, match="base_url"):
        load_settings(env={"CADENCE_INFOBIP_API_KEY": "k"})
    with pytest.raises(ConfigError, match="email_provider"):
        load_settings(env={"CADENCE_EMAIL_PROVIDER": "carrier-pigeon"})


@pytest.mark.parametrize(
    ("sender", "problem"),
    [
        ("AcmeHomes", None),
        ("Acme Homes", None),
        ("+491511234567", None),
        ("49151123456789", None),
        ("Acme Homes Ltd", "is 14 long; an alphanumeric sender id, characters 3 to 11"),
        ("AH", "is 2 long; an alphanumeric sender id, characters 3 to 11"),
        ("491511234567890", "is 15 long; a numeric sender id, digits 3 to 14"),
    ],
)
def test_sms_senders_infobip_refuses_are_config_errors(sender: str, problem: str | None) -> None:
    env = {
        "CADENCE_INFOBIP_API_KEY": "k",
        "CADENCE_INFOBIP_BASE_URL": "https://abc.api.infobip.com",
        "CADENCE_TENANT_ACME_INFOBIP_SMS_SENDER": sender,
    }
    if problem is None:
        infobip = load_settings(env=env).for_tenant("acme").infobip
        assert infobip is not None and infobip.sms_sender == sender
        return
    with pytest.raises(ConfigError, match=r"tenants\.acme\.infobip\.sms_sender") as error:
        load_settings(env=env)
    assert problem in str(error.value)


def test_whatsapp_approved_templates(tmp_path: Path) -> None:
    path = tmp_path / "adapters.toml"
    path.write_text(
        """
[default.whatsapp_templates.follow_up_wa]
name = "viewing_reminder_v2"
language = "en_GB"
parameters = ["{{ contact.first_name }}", "{{ contact.city }}"]
""",
        encoding="utf-8",
    )
    approved = load_settings(path, env={}).default.whatsapp_templates["follow_up_wa"]
    assert approved.name == "viewing_reminder_v2" and approved.language == "en_GB"
    assert approved.parameters == ("{{ contact.first_name }}", "{{ contact.city }}")
    path.write_text('[default.whatsapp_templates.x]\nname = "n"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="language"):
        load_settings(path, env={})


def test_an_approved_whatsapp_template_lists_its_other_languages(tmp_path: Path) -> None:
    """WhatsApp approves each language of a template on its own, under one name."""
    path = tmp_path / "adapters.toml"
    table = '[default.whatsapp_templates.wa]\nname = "n"\nlanguage = "en"\n'
    path.write_text(table + 'languages = ["es", " pt_BR "]\n', encoding="utf-8")
    approved = load_settings(path, env={}).default.whatsapp_templates["wa"]
    assert approved.languages == ("es", "pt_BR")
    for bad in ('"es"', '["es", ""]', "[1]"):
        path.write_text(table + f"languages = {bad}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=r"whatsapp_templates\.wa\.languages must be"):
            load_settings(path, env={})


def test_a_base_url_written_as_the_provider_shows_it_is_an_https_url() -> None:
    """Infobip shows each account's base URL as `xxxxx.api.infobip.com`, without a scheme;
    pasted as shown, every send failed to connect and stayed unknown for ever."""
    env = {"CADENCE_INFOBIP_API_KEY": "k", "CADENCE_INFOBIP_BASE_URL": "xk1y2.api.infobip.com/",
           "CADENCE_BREVO_API_KEY": "k", "CADENCE_BREVO_BASE_URL": "api.brevo.com"}  # fmt: skip
    default = load_settings(env=env).for_tenant("default")
    assert (
        default.infobip is not None and default.infobip.base_url == "https://xk1y2.api.infobip.com"
    )
    assert default.brevo is not None and default.brevo.base_url == "https://api.brevo.com"
    for bad in ("ftp://xk1y2.api.infobip.com", "https://", "xk1y2 api infobip com"):
        with pytest.raises(ConfigError, match=r"default\.infobip\.base_url must be"):
            load_settings(env={**env, "CADENCE_INFOBIP_BASE_URL": bad})


def test_an_api_key_read_with_its_line_break_is_the_key() -> None:
    """A key kept in a file or a secret store comes with a trailing line break; in the
    request header it made httpx refuse every request, which read as a lost connection:
    every send stayed unknown. An API key is the key without surrounding white space."""
    env = {"CADENCE_INFOBIP_API_KEY": "ib-key\r\n", "CADENCE_INFOBIP_BASE_URL": "x.api.infobip.com",
           "CADENCE_BREVO_API_KEY": " xkeysib-1\n"}  # fmt: skip
    default = load_settings(env=env).for_tenant("default")
    assert default.infobip is not None and default.infobip.api_key.reveal() == "ib-key"
    assert default.brevo is not None and default.brevo.api_key.reveal() == "xkeysib-1"
    with pytest.raises(ConfigError, match=r"default\.brevo\.api_key holds white space"):
        load_settings(env={**env, "CADENCE_BREVO_API_KEY": "xkeysib-1\nxkeysib-2"})
    with pytest.raises(ConfigError, match=r"default\.infobip needs api_key"):
        load_settings(env={**env, "CADENCE_INFOBIP_API_KEY": "\n"})


def test_an_infobip_notify_url_must_be_an_http_url(tmp_path: Path) -> None:
    """notifyUrl goes in every SMS and WhatsApp request: one that is no URL got the
    requests refused, or the delivery reports lost, with nothing said at load."""
    config = tmp_path / "adapters.toml"
    table = '[default.infobip]\napi_key = "k"\nbase_url = "x.api.infobip.com"\nnotify_url = "{}"\n'
    config.write_text(table.format("https://cadence.acme.test/webhooks/infobip?token=t"))
    infobip = load_settings(config, env={}).for_tenant("default").infobip
    assert infobip is not None
    assert infobip.notify_url == "https://cadence.acme.test/webhooks/infobip?token=t"
    config.write_text(table.format("cadence.acme.test/webhooks/infobip"))
    with pytest.raises(ConfigError, match=r"default\.infobip\.notify_url must be an http\(s\) URL"):
        load_settings(config, env={})


@pytest.mark.parametrize(
    ("env", "where"),
    [({"CADENCE_WEBHOOK_SECRET": "s", "CADENCE_WEBHOOK_URL": "https://[::1/hook"},
      r"default\.webhook\.url must be"),
     ({"CADENCE_INFOBIP_API_KEY": "k", "CADENCE_INFOBIP_BASE_URL": "[::1"},
      r"default\.infobip\.base_url must be")],
)  # fmt: skip
def test_a_url_python_cannot_split_is_a_config_error(env: dict[str, str], where: str) -> None:
    """urlsplit raises ValueError for a broken `[...]` host: it left load_settings as a bare
    ValueError (a traceback at `cadence serve`) instead of naming the setting."""
    with pytest.raises(ConfigError, match=where):
        load_settings(env=env)
