"""`cadence preview` and `cadence send-test` from the command line."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import trio

from cadence.adapters.standins.infobip import InfobipStandin
from cadence.cli import main
from tests.adapters.test_smtp import Inbox

SOURCE = """
template welcome email {
  subject "Welcome to {{ company.name | default('Acme') }}, {{ contact.first_name }}!"
  preheader "Three things to try first"
  body file "templates/welcome.html.j2"
  locale "es" {
    subject "¡Bienvenido, {{ contact.first_name }}!"
    body "<p>Hola {{ contact.first_name }}: {{ contact.budget | money('EUR') }}</p>"
  }
}
template follow_up sms "Hi {{ contact.first_name }}, still in {{ contact.city }}? Reply STOP."
template wa whatsapp "Hi {{ contact.first_name }}, want to book a viewing?"
template draft sms "Not sent by any campaign yet, {{ contact.first_name | default('friend') }}"

campaign welcome_series "Welcome" {
  from "Acme Homes <hello@acme.test>"
  channels email, sms
  on contact_created { send email welcome  wait 1d  send sms follow_up }
}
"""

HTML = """<html><body>
<h1>Hi {{ contact.first_name }}</h1>
<p>Budget: {{ contact.budget | money('USD') }}</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>
"""


@pytest.fixture
def campaign_file(tmp_path: Path) -> Path:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "welcome.html.j2").write_text(HTML, encoding="utf-8")
    path = tmp_path / "welcome.cadence"
    path.write_text(SOURCE, encoding="utf-8")
    return path


def test_preview_email(campaign_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    contact = '{"first_name": "Ana", "budget": 450000}'
    company = '{"name": "Acme"}'
    assert main(["preview", str(campaign_file), "welcome", "--contact", contact,
                 "--company", company]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "template welcome (email, locale en)" in out
    assert "Subject:   Welcome to Acme, Ana!" in out
    assert "Preheader: Three things to try first" in out
    assert "Budget: $450,000.00" in out
    assert "<h1>" not in out  # HTML only with --html


def test_preview_gives_company_the_tenants_name_as_a_send_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A send (and a dry-run) gives `company.name` the tenant's name; preview gave nothing,
    so it failed ("`company.name` is undefined") on the examples' welcome template, or
    showed a `default(...)` no send would show."""
    path = tmp_path / "hello.cadence"
    path.write_text(
        'template hi sms "Hi from {{ company.name }} ({{ company.id }})"\n'
        "template other sms \"Hi from {{ company.name | default('Acme') }}\"\n"
    )
    assert main(["preview", str(path), "hi"]) == 0
    assert "Hi from default (default)" in capsys.readouterr().out
    assert main(["preview", str(path), "other"]) == 0
    assert "Hi from default" in capsys.readouterr().out
    assert main(["preview", str(path), "hi", "--company", '{"name": "Acme"}']) == 0
    assert "Hi from Acme (default)" in capsys.readouterr().out


def test_preview_localized_from_a_contact_file(
    campaign_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contact = tmp_path / "ana.json"
    contact.write_text(json.dumps({"first_name": "Ana", "budget": 450000, "locale": "es-ES"}))
    code = main(["preview", str(campaign_file), "welcome", "--contact", str(contact), "--html"])
    assert code == 0
    out = capsys.readouterr().out
    assert "locale es" in out and "Subject:   ¡Bienvenido, Ana!" in out
    assert "Hola Ana: 450.000,00\xa0€" in out and "<p>Hola Ana" in out


def test_preview_sms_segments_and_json(
    campaign_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contact = '{"first_name": "Zoë", "city": "Paris"}'
    assert main(["preview", str(campaign_file), "follow_up", "--contact", contact]) == 0
    assert "SMS: UCS-2, 35 characters, 1 segment" in capsys.readouterr().out
    code = main(
        ["preview", str(campaign_file), "follow_up", "--contact", contact, "--format", "json"]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["encoding"] == "UCS-2" and data["segments"] == 1 and data["channel"] == "sms"


def test_preview_of_a_template_no_campaign_sends(
    campaign_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["preview", str(campaign_file), "draft"]) == 0
    assert "Not sent by any campaign yet, Alex" in capsys.readouterr().out


def test_preview_of_a_confirmation_shows_a_placeholder_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "optin.cadence"
    path.write_text('template confirm_text sms "Tap to confirm: {{ confirm_url }}"\n')
    assert main(["preview", str(path), "confirm_text"]) == 0
    assert "Tap to confirm: https://example.invalid/optin/preview" in capsys.readouterr().out


def test_preview_errors(campaign_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["preview", str(campaign_file), "follow_up", "--contact", '{"first_name": "Jo"}']) == 1
    )
    err = capsys.readouterr().err
    assert "follow_up (body), line 1" in err and "contact.city" in err
    assert main(["preview", str(campaign_file), "welcom"]) == 2
    assert "did you mean `welcome`" in capsys.readouterr().err
    assert main(["preview", str(campaign_file), "welcome", "--contact", "{oops"]) == 2
    assert main(["preview", str(campaign_file), "welcome", "--contact", "missing.json"]) == 2


def test_send_test_email_over_smtp(
    campaign_file: Path,
    inbox: tuple[Inbox, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler, port = inbox
    monkeypatch.setenv("CADENCE_SMTP_URL", f"smtp+plain://127.0.0.1:{port}")
    contact = '{"first_name": "Ana", "budget": 1}'
    code = main(
        [
            "send-test",
            str(campaign_file),
            "welcome",
            "--to",
            "ana@example.test",
            "--contact",
            contact,
            "--company",
            '{"name": "Acme"}',
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "sent welcome to ana@example.test via smtp" in capsys.readouterr().out
    ((envelope, mime),) = handler.messages
    assert envelope.rcpt_tos == ["ana@example.test"]
    assert mime["From"] == "Acme Homes <hello@acme.test>"
    assert mime["Subject"] == "Welcome to Acme, Ana!"


class BackgroundInfobip:
    """The Infobip stand-in on its own thread, for a CLI that runs its own event loop."""

    def __init__(self) -> None:
        self.standin = InfobipStandin()
        self.ready = threading.Event()
        self.url = ""
        self._stop: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self.thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        with trio.CancelScope() as scope:
            self._cancel = scope
            self._stop = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self.url = await nursery.start(self.standin.serve)
                self.ready.set()

    def __enter__(self) -> BackgroundInfobip:
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._stop is not None and self._cancel is not None
        self._stop.run_sync_soon(self._cancel.cancel)
        self.thread.join(10)


def test_send_test_sms_through_infobip(
    campaign_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with BackgroundInfobip() as infobip:
        monkeypatch.setenv("CADENCE_INFOBIP_BASE_URL", infobip.url)
        monkeypatch.setenv("CADENCE_INFOBIP_API_KEY", "test-infobip-key")
        contact = '{"first_name": "Jo", "city": "Leeds"}'
        code = main(
            [
                "send-test",
                str(campaign_file),
                "follow_up",
                "--to",
                "+447946000001",
                "--contact",
                contact,
            ]
        )
        assert code == 0, capsys.readouterr().err
        (message,) = infobip.standin.messages
        assert message.to == "447946000001"
        assert message.text == "Hi Jo, still in Leeds? Reply STOP."
    monkeypatch.setenv("CADENCE_INFOBIP_API_KEY", "wrong")
    with BackgroundInfobip() as infobip:
        monkeypatch.setenv("CADENCE_INFOBIP_BASE_URL", infobip.url)
        code = main(
            [
                "send-test",
                str(campaign_file),
                "follow_up",
                "--to",
                "+447946000001",
                "--contact",
                contact,
            ]
        )
        assert code == 1
        # A refused key holds a send (the engine's waits for the key): this one is not sent.
        said = capsys.readouterr().err
        assert "not sent (retry_later" in said and "401 UNAUTHORIZED" in said


def test_send_test_without_a_provider_fails_cleanly(
    campaign_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("CADENCE_SMTP_URL", "CADENCE_BREVO_API_KEY", "CADENCE_EMAIL_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    contact = '{"first_name": "Ana", "budget": 1}'
    code = main(
        ["send-test", str(campaign_file), "welcome", "--to", "a@b.test", "--contact", contact]
    )
    assert code == 1
    assert "no provider configured for email" in capsys.readouterr().err


def test_send_test_uses_the_tenant_cadence_tenant_names(
    campaign_file: Path,
    inbox: tuple[Inbox, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every command's --tenant defaults to $CADENCE_TENANT; send-test's was always
    `default`, so it tested another tenant's providers than the ones set up for it."""
    handler, port = inbox
    for name in ("CADENCE_SMTP_URL", "CADENCE_BREVO_API_KEY", "CADENCE_EMAIL_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CADENCE_TENANT", "acme")
    monkeypatch.setenv("CADENCE_TENANT_ACME_SMTP_URL", f"smtp+plain://127.0.0.1:{port}")
    contact = '{"first_name": "Ana", "budget": 1}'
    code = main(
        ["send-test", str(campaign_file), "welcome", "--to", "a@b.test", "--contact", contact]
    )
    assert code == 0, capsys.readouterr().err
    ((_, mime),) = handler.messages
    assert mime["Subject"] == "Welcome to acme, Ana!"


@pytest.mark.parametrize(
    ("languages", "contact", "language"),
    [
        ("", {"first_name": "Li"}, "en"),
        # Approved in more languages: the one that fits the contact's locale.
        ('languages = ["es", "pt_BR"]', {"first_name": "Lía", "locale": "es-AR"}, "es"),
    ],
)
def test_send_test_whatsapp_uses_the_approved_template(
    languages: str,
    contact: dict[str, str],
    language: str,
    campaign_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "adapters.toml"
    config.write_text(
        f"""
[default.infobip]
api_key_env = "IB_KEY"
whatsapp_sender = "447860099299"
[default.whatsapp_templates.wa]
name = "viewing_offer"
language = "en"
{languages}
parameters = ["{{{{ contact.first_name }}}}"]
""",
        encoding="utf-8",
    )
    with BackgroundInfobip() as infobip:
        monkeypatch.setenv("IB_KEY", "test-infobip-key")
        monkeypatch.setenv("CADENCE_INFOBIP_BASE_URL", infobip.url)
        args = ["send-test", str(campaign_file), "wa", "--to", "+447946000009"]
        code = main([*args, "--config", str(config), "--contact", json.dumps(contact)])
        assert code == 0, capsys.readouterr().err
        (message,) = infobip.standin.messages
    assert (message.template, message.language, message.placeholders) == (
        "viewing_offer",
        language,
        (contact["first_name"],),
    )
    assert message.sender == "447860099299"


def test_an_inbox_template_cannot_be_test_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An inbox message goes into the engine's store for a contact, not to an address."""
    path = tmp_path / "inbox.cadence"
    path.write_text('template note inbox "Hi {{ contact.first_name }}"\n', encoding="utf-8")
    assert main(["send-test", str(path), "note", "--to", "ana"]) == 2
    assert "`inbox` templates cannot be test-sent" in capsys.readouterr().err


@pytest.mark.parametrize("written", ["+44 (0)7946 000001", "0044 7946-000001", "+44.7946.000001"])
def test_send_test_sends_to_a_number_written_in_any_international_form(
    written: str,
    campaign_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--to` is read as a contact's phone is stored: `+44 (0)...` dropped its bracketed
    trunk 0 nowhere and `0044...` kept its 00, so Infobip got another number."""
    with BackgroundInfobip() as infobip:
        monkeypatch.setenv("CADENCE_INFOBIP_BASE_URL", infobip.url)
        monkeypatch.setenv("CADENCE_INFOBIP_API_KEY", "test-infobip-key")
        contact = '{"first_name": "Jo", "city": "Leeds"}'
        code = main(["send-test", str(campaign_file), "follow_up", "--to", written,
                     "--contact", contact])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        (message,) = infobip.standin.messages
    assert message.to == "447946000001"


def test_send_test_refuses_a_recipient_that_is_no_address(
    campaign_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A national number (no country code) or a malformed address is named, not sent."""
    contact = ["--contact", '{"first_name": "Jo", "city": "Leeds", "budget": 1}']
    code = main(["send-test", str(campaign_file), "follow_up", "--to", "07946 000001", *contact])
    assert code == 2
    assert "--to: '07946 000001' is not an international phone number" in capsys.readouterr().err
    code = main(["send-test", str(campaign_file), "welcome", "--to", "ana at example", *contact])
    assert code == 2
    assert "--to: 'ana at example' is not an email address" in capsys.readouterr().err
