"""Consent over HTTP: the backend records it, the person confirms a double opt-in by link.

The confirmation page only asks (a GET changes nothing, as scanners follow links); its
button confirms, once. A wrong or used link says so and changes nothing.
"""

from __future__ import annotations

import datetime as dt

import trio

from cadence.engine.consent import TOKEN_VALID_FOR
from tests.adapters.test_web_service import T0, TOKEN, Service, _with_service

AUTH = {"authorization": f"Bearer {TOKEN}"}
PEOPLE = [{"id": "ana", "email": "ana@example.test", "first_name": "Ana"}]


def test_a_double_opt_in_is_asked_over_the_api_and_confirmed_by_the_person(
    store_url: str,
) -> None:
    async def body(service: Service) -> None:
        client = service.client
        await service.engine.upsert_contacts(PEOPLE)
        asked = await client.put(
            "/contacts/ana/consents/email", json={"status": "pending", "source": "signup"},
            headers=AUTH,
        )  # fmt: skip
        assert asked.status_code == 200, asked.text
        link = asked.json()["confirm_url"]
        assert asked.json()["status"] == "pending" and link.startswith("/optin/")

        page = await client.get(link)
        assert page.status_code == 200 and "Confirm that you want emails from Acme" in page.text
        listed = await client.get("/contacts/ana/consents", headers=AUTH)
        assert listed.json() == {"contact": "ana", "consents": {"email": "pending"}}

        done = await client.post(link)
        assert done.status_code == 200 and "Acme may now send you emails" in done.text
        again = await client.post(link)
        assert again.status_code == 404 and "used already" in again.text
        assert (await client.get(link)).status_code == 404
        listed = await client.get("/contacts/ana/consents", headers=AUTH)
        assert listed.json()["consents"] == {"email": "granted"}

        withdrawn = await client.put(
            "/contacts/ana/consents/email", json={"status": "withdrawn"}, headers=AUTH
        )
        assert withdrawn.json() == {"contact": "ana", "channel": "email", "status": "withdrawn"}

    trio.run(_with_service, store_url, body)


def test_an_expired_confirmation_link_says_so_and_changes_nothing(store_url: str) -> None:
    async def body(service: Service) -> None:
        client = service.client
        await service.engine.upsert_contacts(PEOPLE)
        asked = await client.put(
            "/contacts/ana/consents/email", json={"status": "pending"}, headers=AUTH
        )
        link = asked.json()["confirm_url"]
        service.clock.advance_to(T0 + TOKEN_VALID_FOR + dt.timedelta(minutes=1))
        for answer in (await client.get(link), await client.post(link)):
            assert answer.status_code == 410, answer.text
            assert "expired" in answer.text and "sign up with Acme again" in answer.text
        listed = await client.get("/contacts/ana/consents", headers=AUTH)
        assert listed.json()["consents"] == {"email": "pending"}

    trio.run(_with_service, store_url, body)


def test_bad_consent_requests_are_refused_whole(store_url: str) -> None:
    async def body(service: Service) -> None:
        client = service.client
        await service.engine.upsert_contacts(PEOPLE)
        for path, payload, problem in (
            ("/contacts/nobody/consents/email", {"status": "granted"}, "no contact"),
            ("/contacts/ana/consents/fax", {"status": "granted"}, "takes no consent"),
            ("/contacts/ana/consents/email", {"status": "maybe"}, "none of"),
            ("/contacts/ana/consents/email", {"state": "granted"}, "expected"),
            ("/contacts/ana/consents/email", {"status": "granted", "source": 3}, "source"),
        ):
            answer = await client.put(path, json=payload, headers=AUTH)
            assert answer.status_code == 400 and problem in answer.json()["error"], answer.text
        unauthorized = await client.put("/contacts/ana/consents/email", json={"status": "granted"})
        assert unauthorized.status_code == 401
        assert (await client.post("/optin/not-a-token")).status_code == 404
        listed = await client.get("/contacts/ana/consents", headers=AUTH)
        assert listed.json()["consents"] == {}

    trio.run(_with_service, store_url, body)
