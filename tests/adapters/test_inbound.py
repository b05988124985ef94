"""The webhook parsers alone (cadence/adapters/inbound): published shapes in, reports out.

The bodies are the providers' published examples (Brevo's transactional webhooks page,
Infobip's delivery-report, seen-report and inbound-message webhooks), and the references
are read back from what Cadence's own outbound adapters send.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from cadence.adapters.brevo import BrevoAdapter
from cadence.adapters.config import BrevoConfig, InfobipConfig, Secret
from cadence.adapters.inbound import InvalidWebhook, parse_webhook
from cadence.adapters.infobip import InfobipAdapter, message_id_for
from tests.adapters.conftest import email, sms

# Brevo's documented "request" example, with the values its docs elide filled in.
BREVO_REQUEST: dict[str, Any] = {
    "event": "request",
    "email": "example@domain.com",
    "id": 123456,
    "date": "2020-10-09 00:00:00",
    "ts": 1604933619,
    "message-id": "201798300811.5787683@relay.domain.com",
    "ts_event": 1604933654,
    "subject": "My first Transactional",
    "X-Mailin-custom": "some_custom_header",
    "sending_ip": "185.41.28.109",
    "ts_epoch": 1604933654,
    "template_id": 22,
    "mirror_link": "https://app-smtp.brevo.com/log/preview/1a2000f4-4e33-23aa-ab68-900d00009152c",
    "contact_id": 8,
    "tags": ["transac_messages"],
}

# Infobip's documented SMS delivery report.
INFOBIP_DLR: dict[str, Any] = {
    "results": [
        {
            "bulkId": "BULK-ID-123-xyz",
            "price": {"pricePerMessage": 0.01, "currency": "EUR"},
            "status": {"id": 5, "groupId": 3, "groupName": "DELIVERED",
                       "name": "DELIVERED_TO_HANDSET",
                       "description": "Message delivered to handset"},
            "error": {"id": 0, "name": "NO_ERROR", "description": "No Error", "groupId": 0,
                      "groupName": "OK", "permanent": False},
            "messageId": "MESSAGE-ID-123-xyz",
            "doneAt": "2019-11-09T16:00:00.000+0000",
            "smsCount": 1,
            "sentAt": "2019-11-09T16:00:00.000+0000",
            "to": "41793026727",
            "callbackData": "DLR callback data",
        }
    ]
}  # fmt: skip

# Infobip's documented inbound SMS (MO_JSON_2) and WhatsApp inbound text.
INFOBIP_MO: dict[str, Any] = {
    "results": [
        {
            "messageId": "817790313235066447",
            "from": "385916242493",
            "to": "385921004026",
            "text": "QUIZ Correct answer is Paris",
            "cleanText": "Correct answer is Paris",
            "keyword": "QUIZ",
            "receivedAt": "2016-10-06T09:28:39.220+0000",
            "smsCount": 1,
            "price": {"pricePerMessage": 0, "currency": "EUR"},
            "callbackData": "callbackData",
        }
    ],
    "messageCount": 1,
    "pendingMessageCount": 0,
}
WHATSAPP_IN: dict[str, Any] = {
    "results": [
        {
            "from": "385919998888",
            "to": "447860099299",
            "integrationType": "WHATSAPP",
            "receivedAt": "2019-07-19T11:23:19.066+0000",
            "messageId": "ABEGOFl3RpkoAhDGJ8Yx2fNFNsaXUsqu7o0LBw",
            "pairedMessageId": None,
            "callbackData": None,
            "message": {"type": "TEXT", "text": "Hello"},
            "contact": {"name": "Frank"},
            "price": {"pricePerMessage": 0, "currency": "EUR"},
        }
    ],
    "messageCount": 1,
    "pendingMessageCount": 0,
}
WHATSAPP_SEEN: dict[str, Any] = {
    "results": [
        {
            "messageId": "1215f543ab19-345f-adbd-12ad31451ed25f35",
            "from": "385919998888",
            "to": "41793026731",
            "sentAt": "2018-12-12T11:21:57.793+0000",
            "seenAt": "2018-12-12T11:21:58.251+0000",
            "applicationId": "example-application-id",
            "entityId": "example-entity-id",
        }
    ]
}


def test_brevo_published_request_example() -> None:
    parsed = parse_webhook("brevo", BREVO_REQUEST)
    (report,) = parsed.reports
    assert report.outcome == "requested" and report.events == ()
    assert report.at == dt.datetime.fromtimestamp(1604933654, dt.UTC)  # ts_epoch, in seconds
    assert report.provider_message_id == "201798300811.5787683@relay.domain.com"
    # Not a Cadence outbox id: a key to look up, which will match nothing of ours.
    assert (report.outbox_ref, report.send_key) == (None, "some_custom_header")
    assert report.detail["tags"] == ["transac_messages"] and report.detail["template_id"] == "22"


def test_brevo_reads_the_outbox_id_its_outbound_adapter_sends() -> None:
    adapter = BrevoAdapter(BrevoConfig(api_key=Secret("k")))
    message = email(1, outbox_id="4711")
    custom = adapter.payload([message])["headers"]["X-Mailin-custom"]
    body = {**BREVO_REQUEST, "event": "hard_bounce", "X-Mailin-custom": custom, "reason": "550"}
    (report,) = parse_webhook("brevo", body).reports
    assert report.outbox_ref == "4711" and report.send_key is None
    assert report.events == (("bounced", {"type": "hard", "reason": "550",
                                          "provider_event": "hard_bounce"}),)  # fmt: skip
    # A batch's header names no message: it is matched by message id only.
    batch = adapter.payload([email(1), email(2)])["headers"]["X-Mailin-custom"]
    (batched,) = parse_webhook("brevo", {**body, "X-Mailin-custom": batch}).reports
    assert (batched.outbox_ref, batched.send_key) == (None, None)


@pytest.mark.parametrize(
    ("event", "outcome", "cadence_event", "kind"),
    [
        ("delivered", "delivered", "delivered", None),
        ("hard_bounce", "bounced", "bounced", "hard"),
        ("invalid_email", "bounced", "bounced", "hard"),
        ("blocked", "bounced", "bounced", "hard"),
        ("soft_bounce", "soft_bounced", "bounced", "soft"),
        ("spam", "complained", "complained", None),
        ("complaint", "complained", "complained", None),
        ("unsubscribed", "unsubscribed", "unsubscribed", None),
        ("opened", "opened", "opened", None),
        ("unique_opened", "opened", "opened", None),
        ("proxy_open", "proxy_opened", None, None),
        ("click", "clicked", "clicked", None),
        ("deferred", "deferred", None, None),
        ("error", "failed", None, None),
        ("hardBounce", "bounced", "bounced", "hard"),
        ("uniqueOpened", "opened", "opened", None),
        ("proxyOpen", "proxy_opened", None, None),
    ],
)
def test_brevo_events_map_to_outcomes_and_events(
    event: str, outcome: str, cadence_event: str | None, kind: str | None
) -> None:
    (report,) = parse_webhook(
        "brevo", {**BREVO_REQUEST, "event": event, "link": "https://x.test"}
    ).reports
    assert report.outcome == outcome
    assert [name for name, _ in report.events] == ([cadence_event] if cadence_event else [])
    if kind is not None:
        assert report.events[0][1]["type"] == kind
    if event == "click":
        assert report.events[0][1]["url"] == "https://x.test"


def test_brevo_times_date_is_paris_time_and_ts_epoch_milliseconds() -> None:
    base = {k: v for k, v in BREVO_REQUEST.items() if k not in ("ts", "ts_event", "ts_epoch")}
    (winter,) = parse_webhook("brevo", {**base, "date": "2026-12-01 10:00:00"}).reports
    assert winter.at == dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    (summer,) = parse_webhook("brevo", {**base, "date": "2026-07-01 10:00:00"}).reports
    assert summer.at == dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.UTC)
    (epoch,) = parse_webhook("brevo", {**base, "ts_epoch": 1764579600123}).reports
    assert epoch.at == dt.datetime(2025, 12, 1, 9, 0, 0, 123000, tzinfo=dt.UTC)


def test_brevo_one_open_reported_as_unique_and_plain_has_one_dedupe_key() -> None:
    opened = {**BREVO_REQUEST, "event": "opened"}
    unique = {**BREVO_REQUEST, "event": "unique_opened"}
    later = {**opened, "ts_event": 1604933999}
    a, b, c = parse_webhook("brevo", [opened, unique, later]).reports
    assert a.dedupe == b.dedupe != c.dedupe
    assert a.dedupe == parse_webhook("brevo", json.loads(json.dumps(opened))).reports[0].dedupe


@pytest.mark.parametrize(
    ("fields", "tags"),
    [
        ({"tags": ["transac_messages"]}, ["transac_messages"]),
        ({"tag": "welcome"}, ["welcome"]),
        ({"tag": '["welcome","daily"]'}, ["welcome", "daily"]),
        ({"tag": "[beta] launch"}, ["[beta] launch"]),
        ({"tag": ""}, []),
    ],
)
def test_brevo_tags_in_each_form_brevo_writes_them(fields: dict[str, Any], tags: list[str]) -> None:
    body = {k: v for k, v in BREVO_REQUEST.items() if k != "tags"} | fields
    (report,) = parse_webhook("brevo", body).reports
    assert report.detail.get("tags", []) == tags


def test_brevo_unknown_events_are_ignored_not_refused() -> None:
    parsed = parse_webhook("brevo", [BREVO_REQUEST, {**BREVO_REQUEST, "event": "list_addition"}])
    assert len(parsed.reports) == 1 and parsed.ignored == [("[1]", "list_addition")]


def test_brevo_bad_bodies_name_every_bad_field_by_position() -> None:
    with pytest.raises(InvalidWebhook) as caught:
        parse_webhook(
            "brevo",
            [
                BREVO_REQUEST,
                {**BREVO_REQUEST, "event": ["spam"], "tags": "x"},
                {**BREVO_REQUEST, "ts_event": "late"},
                [],
            ],
        )
    text = str(caught.value)
    expected = [
        "[1].event: expected a string, got array",
        "[1].tags: expected a list",
        "[2].ts_event: expected a number",
        "[3]: expected an object, got array",
    ]
    for where in expected:
        assert where in text, text
    assert len(caught.value.problems) == 4
    with pytest.raises(InvalidWebhook, match=r"\$: an empty list"):
        parse_webhook("brevo", [])


def test_infobip_published_delivery_report() -> None:
    (report,) = parse_webhook("infobip", INFOBIP_DLR).reports
    assert report.outcome == "delivered" and [n for n, _ in report.events] == ["delivered"]
    assert report.provider_message_id == "MESSAGE-ID-123-xyz"
    assert report.at == dt.datetime(2019, 11, 9, 16, 0, tzinfo=dt.UTC)
    # Someone else's callbackData is no reference; the messageId is.
    assert (report.outbox_ref, report.tenant, report.send_key) == (None, None, None)
    assert report.address == "+41793026727"


def test_infobip_reads_the_references_its_outbound_adapter_sends() -> None:
    adapter = InfobipAdapter(
        InfobipConfig(api_key=Secret("k"), base_url="https://x.api.infobip.com")
    )
    message = sms(1, outbox_id="812")
    (item,) = adapter.sms_payload([message])["messages"]
    entry = {**INFOBIP_DLR["results"][0], "messageId": item["destinations"][0]["messageId"],
             "callbackData": item["callbackData"]}  # fmt: skip
    (report,) = parse_webhook("infobip", {"results": [entry]}).reports
    assert report.provider_message_id == message_id_for(message)
    assert (report.outbox_ref, report.tenant, report.send_key) == (
        "812", "acme", message.idempotency_key,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("group", "permanent", "outcome", "bounce"),
    [
        ("UNDELIVERABLE", True, "bounced", "hard"),
        ("UNDELIVERABLE", None, "bounced", "hard"),
        ("UNDELIVERABLE", False, "soft_bounced", "soft"),
        ("EXPIRED", True, "expired", "soft"),
        ("REJECTED", True, "failed", None),
        ("PENDING", False, "pending", None),
    ],
)
def test_infobip_status_groups(
    group: str, permanent: bool | None, outcome: str, bounce: str | None
) -> None:
    entry = dict(INFOBIP_DLR["results"][0])
    entry["status"] = {**entry["status"], "groupName": group}
    entry["error"] = {**ABSENT_SUBSCRIBER, "permanent": permanent}
    if permanent is None:
        del entry["error"]["permanent"]
    (report,) = parse_webhook("infobip", {"results": [entry]}).reports
    assert report.outcome == outcome
    if bounce is None:
        assert report.events == ()
    else:
        assert report.events[0][0] == "bounced" and report.events[0][1]["type"] == bounce


ABSENT_SUBSCRIBER = {
    "groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27,
    "name": "EC_ABSENT_SUBSCRIBER", "description": "Absent Subscriber",
}  # fmt: skip


@pytest.mark.parametrize(
    "error",
    [
        INFOBIP_DLR["results"][0]["error"],
        {"groupId": 0, "groupName": "OK", "id": 0, "permanent": False},
        {"groupId": "0", "groupName": "OK", "id": "0", "name": "NO_ERROR", "permanent": False},
    ],
)
def test_an_undeliverable_report_with_infobips_no_error_entry_is_a_hard_bounce(
    error: dict[str, Any],
) -> None:
    """`error` NO_ERROR (group OK, id 0) says nothing: its `permanent: false` is no verdict."""
    entry = dict(INFOBIP_DLR["results"][0])
    entry["status"] = {"groupId": 2, "groupName": "UNDELIVERABLE", "id": 9,
                       "name": "UNDELIVERABLE_NOT_DELIVERED",
                       "description": "Message sent not delivered"}  # fmt: skip
    entry["error"] = error
    (report,) = parse_webhook("infobip", {"results": [entry]}).reports
    ((name, properties),) = report.events
    assert name == "bounced" and properties["type"] == "hard"
    assert properties["reason"] == "UNDELIVERABLE_NOT_DELIVERED Message sent not delivered"
    assert "error" not in report.detail and "permanent" not in report.detail


def test_infobip_inbound_sms_whatsapp_and_seen() -> None:
    (mo,) = parse_webhook("infobip", INFOBIP_MO).reports
    assert mo.inbound and mo.channel == "sms" and mo.address == "+385916242493"
    assert mo.events == (("replied", {"channel": "sms", "text": "QUIZ Correct answer is Paris",
                                      "keyword": "QUIZ",
                                      "clean_text": "Correct answer is Paris"}),)  # fmt: skip
    (wa,) = parse_webhook("infobip", WHATSAPP_IN).reports
    assert wa.channel == "whatsapp" and wa.events[0][1]["text"] == "Hello"
    (seen,) = parse_webhook("infobip", WHATSAPP_SEEN).reports
    assert seen.outcome == "seen" and seen.events[0][0] == "opened" and not seen.inbound
    assert seen.at == dt.datetime(2018, 12, 12, 11, 21, 58, 251000, tzinfo=dt.UTC)


def test_an_opt_out_reply_is_reported_as_a_reply_with_its_keyword() -> None:
    """Whether it opts out is decided with every other reply (cadence.engine.suppress)."""
    from cadence.engine.store.records import EventRecord
    from cadence.engine.suppress import is_stop_reply

    def opts_out(text: str, keyword: str) -> bool:
        (report,) = parse_webhook(
            "infobip", replace_text(INFOBIP_MO, text, keyword=keyword)
        ).reports
        assert [name for name, _ in report.events] == ["replied"]
        name, properties = report.events[0]
        return is_stop_reply(EventRecord("p1", name, report.at, properties))

    assert opts_out("Stop.", "STOP") and opts_out("  unsubscribe ", "")
    assert opts_out("STOP please", "STOP")
    assert not opts_out("please stop it", "PLEASE")
    # CTIA's OPT OUT in its spellings, the FCC's REVOKE, French ARRÊT, full-width forms.
    for text in ("Opt out", "opt-out!", "OPT_OUT", "Revoke", "Arrêt", "arret.",
                 "\uff33\uff34\uff2f\uff30",
                 "stop all", "🛑 STOP"):  # fmt: skip
        assert opts_out(text, ""), text
    assert not opts_out("Stop by the shop tomorrow?", "")
    assert not opts_out("Stopped by, nobody home", "")


def replace_text(body: dict[str, Any], text: str, *, keyword: str) -> dict[str, Any]:
    entry = {**body["results"][0], "text": text, "keyword": keyword, "cleanText": ""}
    return {**body, "results": [entry]}


def test_infobip_bad_bodies_name_the_field() -> None:
    entry = INFOBIP_DLR["results"][0]
    cases = [
        ([], "$: expected an object"),
        ({"results": None}, "results: missing"),
        ({"results": [entry, 3]}, "results[1]: expected an object, got number"),
        ({"results": [{**entry, "status": {"groupName": None}}]},
         "results[0].status.groupName: missing"),
        ({"results": [{**entry, "error": {"permanent": "yes"}}]}, "results[0].error.permanent"),
        ({"results": [{**WHATSAPP_IN["results"][0], "receivedAt": "now"}]},
         "results[0].receivedAt: 'now' is not a date-time"),
        ({"results": [{**WHATSAPP_SEEN["results"][0], "seenAt": None}]},
         "results[0].seenAt: missing"),
        ({"results": [{"text": "hi"}]}, "results[0]: not a delivery report"),
    ]  # fmt: skip
    for body, where in cases:
        with pytest.raises(InvalidWebhook) as caught:
            parse_webhook("infobip", body)
        assert where in str(caught.value), (where, str(caught.value))


def test_a_report_of_a_kind_cadence_does_not_act_on_is_ignored_not_refused() -> None:
    """Infobip posts every report type to one URL; one it does not know spoils nothing."""
    deleted = {"messageId": "ABEGSV5TRggHAhBrNrG0pBcnXHsJ", "from": "385919998888",
               "to": "41793026731", "deletedAt": "2024-05-10T09:12:31.000+0000"}  # fmt: skip
    parsed = parse_webhook("infobip", {"results": [INFOBIP_DLR["results"][0], deleted]})
    assert [r.outcome for r in parsed.reports] == ["delivered"]
    assert parsed.ignored == [("results[1]", "report deletedAt")]
    with pytest.raises(InvalidWebhook, match=r"results\[0\]: not a delivery report"):
        parse_webhook("infobip", {"results": [{**deleted, "deletedAt": None}]})


def test_an_unknown_status_group_is_ignored() -> None:
    entry = dict(INFOBIP_DLR["results"][0])
    entry["status"] = {**entry["status"], "groupName": "SOMETHING_NEW"}
    parsed = parse_webhook("infobip", {"results": [entry]})
    assert parsed.reports == [] and parsed.ignored == [("results[0]", "status SOMETHING_NEW")]


def test_whatsapp_button_and_list_replies_have_text() -> None:
    entry = WHATSAPP_IN["results"][0]
    button = {**entry, "message": {"type": "INTERACTIVE_BUTTON_REPLY", "id": "b1", "title": "STOP"}}
    (report,) = parse_webhook("infobip", {"results": [button]}).reports
    assert [name for name, _ in report.events] == ["replied"]
    assert report.events[0][1]["text"] == "STOP"
    image = {**entry, "message": {"type": "IMAGE", "url": "https://x.test/i.jpg"}}
    (media,) = parse_webhook("infobip", {"results": [image]}).reports
    assert media.events == (
        ("replied", {"channel": "whatsapp", "text": "", "message_type": "IMAGE"}),
    )


def test_the_same_entry_twice_has_one_dedupe_key_and_others_differ() -> None:
    first = parse_webhook("infobip", INFOBIP_DLR).reports[0]
    again = parse_webhook("infobip", json.loads(json.dumps(INFOBIP_DLR))).reports[0]
    entry = dict(INFOBIP_DLR["results"][0])
    entry["status"] = {**entry["status"], "groupName": "PENDING", "name": "PENDING_ENROUTE"}
    pending = parse_webhook("infobip", {"results": [entry]}).reports[0]
    assert first.dedupe == again.dedupe != pending.dedupe


def test_a_body_may_come_as_text_or_bytes() -> None:
    as_text = parse_webhook("infobip", json.dumps(INFOBIP_DLR)).reports
    as_bytes = parse_webhook("brevo", json.dumps(BREVO_REQUEST).encode()).reports
    assert as_text[0].provider_message_id == "MESSAGE-ID-123-xyz"
    assert as_bytes[0].outcome == "requested"
    with pytest.raises(InvalidWebhook, match=r"\$: not JSON"):
        parse_webhook("brevo", b'{"event": ')


def test_infobip_reports_carry_the_price_of_every_part() -> None:
    """`pricePerMessage` is per SMS part: a two-part SMS costs twice it."""
    (report,) = parse_webhook("infobip", INFOBIP_DLR).reports
    single = json.loads(json.dumps(INFOBIP_DLR))
    entry = single["results"][0]
    price = entry["price"]
    assert (report.cost, report.currency) == (
        Decimal(str(price["pricePerMessage"])) * entry.get("smsCount", 1),
        price["currency"],
    )
    entry["smsCount"] = 2
    entry["price"] = {"pricePerMessage": 0.07, "currency": "eur"}
    (double,) = parse_webhook("infobip", single).reports
    assert (double.cost, double.currency) == (Decimal("0.14"), "EUR")
    entry.pop("price")
    (unpriced,) = parse_webhook("infobip", single).reports
    assert (unpriced.cost, unpriced.currency) == (None, None)


# A first open through Apple's mail privacy proxy, in the shape Brevo posts it: `tag` as a
# list (other events write it as a string), no `ts`/`ts_event`.
BREVO_PROXY_OPEN: dict[str, Any] = {
    "event": "unique_proxy_open",
    "email": "lena.meyer@example.org",
    "id": 482113,
    "date": "2026-03-04 15:20:11",
    "message-id": "<202603041419.51230981234@smtp-relay.mailin.fr>",
    "subject": "Ihre Besichtigung am Donnerstag",
    "tag": ["viewing-followup", "de"],
    "sending_ip": "77.32.148.20",
    "ts_epoch": 1772634011000,
    "template_id": 41,
}


def test_brevo_tag_sent_as_a_list_is_read_as_the_tags() -> None:
    (report,) = parse_webhook("brevo", BREVO_PROXY_OPEN).reports
    assert report.outcome == "proxy_opened" and report.events == ()
    assert report.detail["tags"] == ["viewing-followup", "de"]
    assert report.at == dt.datetime(2026, 3, 4, 14, 20, 11, tzinfo=dt.UTC)
    with pytest.raises(InvalidWebhook, match=r"tag: expected a list of strings"):
        parse_webhook("brevo", {**BREVO_PROXY_OPEN, "tag": ["ok", 7]})


def test_brevo_an_unknown_event_is_ignored_whatever_shape_its_fields_have() -> None:
    """An event Cadence does not know is not read: its fields cannot refuse the batch."""
    newcomer = {**BREVO_PROXY_OPEN, "event": "loaded_by_scanner", "reason": {"code": 7},
                "link": ["https://a.test"], "ts_event": "soon"}  # fmt: skip
    parsed = parse_webhook("brevo", [BREVO_PROXY_OPEN, newcomer])
    assert [r.outcome for r in parsed.reports] == ["proxy_opened"]
    assert parsed.ignored == [("[1]", "loaded_by_scanner")]
    # A known event with such fields is still refused, naming them.
    with pytest.raises(InvalidWebhook) as caught:
        parse_webhook("brevo", [BREVO_PROXY_OPEN, {**newcomer, "event": "click"}])
    text = str(caught.value)
    for where in ("[1].reason: expected a string", "[1].link: expected a string",
                  "[1].ts_event: expected a number"):  # fmt: skip
        assert where in text, text


def test_brevo_time_is_ts_epoch_when_ts_and_ts_event_follow_the_accounts_time_zone() -> None:
    """An account set to New York: `date`, `ts` and `ts_event` are five hours behind UTC,
    `ts_epoch` (milliseconds) is the moment itself."""
    at = dt.datetime(2026, 3, 4, 14, 20, 11, 250000, tzinfo=dt.UTC)
    local = int(at.timestamp()) - 5 * 3600
    body = {**BREVO_REQUEST, "event": "delivered", "date": "2026-03-04 09:20:11",
            "ts": local, "ts_event": local, "ts_epoch": int(at.timestamp() * 1000)}  # fmt: skip
    (report,) = parse_webhook("brevo", body).reports
    assert report.at == at
    # Without ts_epoch, ts_event is all there is.
    no_epoch = {k: v for k, v in body.items() if k != "ts_epoch"}
    (fallback,) = parse_webhook("brevo", no_epoch).reports
    assert fallback.at == dt.datetime.fromtimestamp(local, dt.UTC)
    # The dedupe value is still ts_event's, as it was: a redelivery is known again.
    assert report.dedupe == fallback.dedupe
    # A date that leaves the calendar once moved to UTC is a bad field, not a crash.
    with pytest.raises(InvalidWebhook, match=r"date: '0001-01-01 00:00:00' is not a date"):
        parse_webhook("brevo", {"event": "delivered", "email": "a@b.test",
                                "date": "0001-01-01 00:00:00"})  # fmt: skip


def test_an_infobip_time_whose_offset_leaves_the_calendar_is_a_bad_field() -> None:
    entry = {**INFOBIP_DLR["results"][0], "doneAt": "0001-01-01T00:00:00.000+0100"}
    with pytest.raises(InvalidWebhook, match=r"results\[0\]\.doneAt: .* is not a date-time"):
        parse_webhook("infobip", {"results": [entry]})


def test_an_infobip_report_of_an_unknown_group_is_ignored_whatever_its_other_fields() -> None:
    entry = {**INFOBIP_DLR["results"][0], "messageId": "6f1c2a90-3d55-4b1e-9c0e-2b7d4e8f0a11"}
    later = {**entry, "status": {"groupId": 9, "groupName": "RECALLED", "id": 91,
                                 "name": "RECALLED_BY_SENDER"},
             "error": {"id": 4012, "name": "EC_RECALL", "permanent": "n/a"},
             "doneAt": 17}  # fmt: skip
    parsed = parse_webhook("infobip", {"results": [entry, later]})
    assert [r.outcome for r in parsed.reports] == ["delivered"]
    assert parsed.ignored == [("results[1]", "status RECALLED")]


def test_an_infobip_report_with_null_times_is_refused_not_dropped() -> None:
    """A report whose doneAt and sentAt are null has no time: a named problem, never a
    report that vanishes without being written, refused or listed."""
    entry = {**INFOBIP_DLR["results"][0], "doneAt": None, "sentAt": None}
    with pytest.raises(InvalidWebhook, match=r"results\[0\]: no time: neither doneAt nor sentAt"):
        parse_webhook("infobip", {"results": [entry]})
    (report,) = parse_webhook(
        "infobip", {"results": [{**entry, "sentAt": "2026-03-04T14:20:11.000+0000"}]}
    ).reports
    assert report.at == dt.datetime(2026, 3, 4, 14, 20, 11, tzinfo=dt.UTC)


BREVO_REPLY: dict[str, Any] = {
    "Uuid": ["0c7a3e51-6a02-4a6c-9a07-5f3d9a1b2c44"],
    "MessageId": "<CAF2x9kq=7Yw@mail.example.org>",
    "InReplyTo": "<202603041419.51230981234@smtp-relay.mailin.fr>",
    "From": {"Name": "Lena Meyer", "Address": "Lena.Meyer@Example.org"},
    "To": [{"Name": None, "Address": "reply@inbound.acme.test"}],
    "Subject": "Re: Ihre Besichtigung am Donnerstag",
    "SentAtDate": "Wed, 4 Mar 2026 15:31:02 +0100",
    "RawTextBody": "Donnerstag passt, danke!\n\nAm 4. März schrieb Acme:\n> Termin?",
    "ExtractedMarkdownMessage": "Donnerstag passt, danke!",
    "ExtractedMarkdownSignature": "Lena",
    "Attachments": [],
    "Headers": {"Message-ID": "<CAF2x9kq=7Yw@mail.example.org>"},
}


def test_a_brevo_inbound_parsing_body_is_a_reply_per_email() -> None:
    """Brevo's inbound parsing posts `{"items": [...]}`: each email is a `replied` on email
    from its sender, naming the send it answers (In-Reply-To), at its Date in UTC, with the
    answer Brevo extracted (not the quoted thread)."""
    second = {**BREVO_REPLY, "Uuid": ["7d1e"], "InReplyTo": None, "ExtractedMarkdownMessage": None}
    parsed = parse_webhook("brevo", {"items": [BREVO_REPLY, second]})
    assert parsed.ignored == []
    first, other = parsed.reports
    assert (first.kind, first.channel, first.inbound) == ("inbound", "email", True)
    assert first.address == "lena.meyer@example.org"
    assert first.answers == "<202603041419.51230981234@smtp-relay.mailin.fr>"
    assert first.at == dt.datetime(2026, 3, 4, 14, 31, 2, tzinfo=dt.UTC)
    assert first.events == (
        ("replied", {"channel": "email", "text": "Donnerstag passt, danke!",
                     "subject": "Re: Ihre Besichtigung am Donnerstag"}),
    )  # fmt: skip
    # Without an extracted answer, the raw text; without In-Reply-To, no send named.
    assert other.events[0][1]["text"].startswith("Donnerstag passt, danke!\n\nAm 4. März")
    assert other.answers is None and other.dedupe != first.dedupe
    assert parse_webhook("brevo", {"items": [BREVO_REPLY]}).reports[0].dedupe == first.dedupe


@pytest.mark.parametrize(
    ("headers", "sender", "automatic"),
    [
        ({"Auto-Submitted": "auto-replied"}, "lena@example.org", True),
        ({"auto-submitted": ["auto-generated"]}, "lena@example.org", True),
        ({"Auto-Submitted": "no"}, "lena@example.org", False),
        ({"X-Autoreply": "yes"}, "lena@example.org", True),
        ({"Precedence": "bulk"}, "lena@example.org", True),
        ({"Precedence": "first-class"}, "lena@example.org", False),
        ({}, "MAILER-DAEMON@mx.example.org", True),
        ({}, "postmaster@example.org", True),
        ("not an object", "lena@example.org", False),
    ],
)
def test_automatic_email_replies_are_listed_as_ignored(
    headers: Any, sender: str, automatic: bool
) -> None:
    """An out-of-office answer or a bounce notice (RFC 3834's Auto-Submitted, the vendor
    headers, a mail daemon) is no reply from the person."""
    item = {**BREVO_REPLY, "Headers": headers, "From": {"Address": sender}}
    parsed = parse_webhook("brevo", {"items": [item]})
    assert (parsed.ignored == [("items[0]", "automatic reply")]) is automatic
    assert len(parsed.reports) == (0 if automatic else 1)


def test_a_reply_without_a_readable_date_is_taken_now_and_bad_bodies_are_refused() -> None:
    """A Date header is the sender's to write: missing or unreadable, the reply is dated
    when it arrives. What Brevo itself shapes (From, Uuid, items) is checked."""
    before = dt.datetime.now(dt.UTC)
    for date in (None, "yesterday-ish"):
        (report,) = parse_webhook("brevo", {"items": [{**BREVO_REPLY, "SentAtDate": date}]}).reports
        assert before <= report.at <= dt.datetime.now(dt.UTC)
    no_sender = {k: v for k, v in BREVO_REPLY.items() if k != "From"}
    with pytest.raises(InvalidWebhook, match=r"items\[1\]\.From: missing"):
        parse_webhook("brevo", {"items": [BREVO_REPLY, no_sender]})
    with pytest.raises(InvalidWebhook, match=r"items\[0\]\.From\.Address: missing"):
        parse_webhook("brevo", {"items": [{**BREVO_REPLY, "From": {"Name": "x"}}]})
    with pytest.raises(InvalidWebhook, match=r"items\[0\]\.Uuid: expected a list of strings"):
        parse_webhook("brevo", {"items": [{**BREVO_REPLY, "Uuid": [7]}]})
    with pytest.raises(InvalidWebhook, match=r"items: expected an array, got object"):
        parse_webhook("brevo", {"items": BREVO_REPLY})


NOT_ENOUGH_CREDITS = {
    "groupId": 5, "groupName": "REJECTED", "id": 12,
    "name": "REJECTED_NOT_ENOUGH_CREDITS", "description": "Not enough credits",
}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (NOT_ENOUGH_CREDITS, INFOBIP_DLR["results"][0]["error"]),
        # The refusal said by the error instead, beside a REJECTED status of another name.
        ({**NOT_ENOUGH_CREDITS, "id": 6, "name": "REJECTED_NETWORK"},
         {"name": "EC_NOT_ENOUGH_CREDITS", "description": "Not enough credits",
          "permanent": True}),
    ],
)  # fmt: skip
def test_an_infobip_report_refusing_for_credit_is_no_failure_and_says_why(
    status: dict[str, Any], error: dict[str, Any]
) -> None:
    entry = {**INFOBIP_DLR["results"][0], "status": status, "error": error}
    entry["price"] = {"pricePerMessage": 0, "currency": "EUR"}
    (report,) = parse_webhook("infobip", {"results": [entry]}).reports
    assert (report.outcome, report.events) == ("no_credits", ())
    assert report.detail["refusal"] == f"Infobip reports {status['name']}: Not enough credits"
    # Redelivered, the same report; a refusal of the message sent again later, another.
    (again,) = parse_webhook("infobip", {"results": [dict(entry)]}).reports
    later = {**entry, "doneAt": "2019-11-10T09:00:00.000+0000"}
    (refused_again,) = parse_webhook("infobip", {"results": [later]}).reports
    assert again.dedupe == report.dedupe != refused_again.dedupe
