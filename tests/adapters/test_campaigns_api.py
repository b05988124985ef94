"""Campaigns managed over HTTP: deploy source, move the lifecycle, read state and numbers.

The same engine calls as the CLI's, behind the API token. Bad source comes back with every
problem's line and column and deploys nothing; a refused move says why and changes
nothing; posted source cannot make the server read its files.
"""

from __future__ import annotations

from pathlib import Path

import trio

from tests.adapters.test_web_service import TOKEN, Service, _with_service

AUTH = {"authorization": f"Bearer {TOKEN}"}
SOURCE = """
template hello email { subject "Hello {{ contact.first_name }}" body "<p>Hi</p>" }
template later email { subject "Later" body "<p>Later.</p>" }
campaign welcome {
  from "Acme <hello@acme.test>"
  on launch { send email hello  wait 1d  send email later }
}
"""
PEOPLE = [
    {"id": "ana", "email": "ana@example.test", "first_name": "Ana"},
    {"id": "bo", "email": "bo@example.test", "first_name": "Bo"},
]


def test_a_campaign_is_deployed_launched_paused_and_resumed_over_http(store_url: str) -> None:
    async def body(service: Service) -> None:
        client, engine = service.client, service.engine
        await engine.upsert_contacts(PEOPLE)
        deployed = await client.post("/campaigns", content=SOURCE.encode(), headers=AUTH)
        assert deployed.status_code == 200, deployed.text
        ((result,), warnings) = deployed.json()["deployed"], deployed.json()["warnings"]
        assert result["name"] == "welcome" and result["created"] is True and warnings == []
        again = await client.post("/campaigns", content=SOURCE.encode(), headers=AUTH)
        assert again.json()["deployed"][0]["created"] is False  # same source, same version

        shown = (await client.get("/campaigns/welcome", headers=AUTH)).json()
        assert shown["status"] == "draft" and shown["version"] == result["version"][:12]

        launched = await client.post("/campaigns/welcome/launch", headers=AUTH)
        assert launched.json() == {"name": "welcome", "status": "active", "moved": 2}
        await engine.run_due()
        assert len(service.standins.brevo.emails) == 2

        refused = await client.post("/campaigns/welcome/resume", headers=AUTH)
        assert refused.status_code == 409 and "active" in refused.json()["error"]
        paused = await client.post("/campaigns/welcome/pause", headers=AUTH)
        assert paused.json()["status"] == "paused"
        resumed = await client.post("/campaigns/welcome/resume", headers=AUTH)
        assert resumed.json()["status"] == "active"

        listed = (await client.get("/campaigns", headers=AUTH)).json()["campaigns"]
        assert [(c["name"], c["enrollments"], c["performance"]["sent"]) for c in listed] == [
            ("welcome", {"active": 2}, 2)
        ]
        one = (await client.get("/campaigns/welcome", headers=AUTH)).json()
        assert one["performance"]["by_template"]["hello"]["sent"] == 2

        cloned = await client.post("/campaigns/welcome/clone", json={"name": "welcome_v2"},
                                   headers=AUTH)  # fmt: skip
        assert cloned.status_code == 201 and cloned.json()["name"] == "welcome_v2"
        approved = await client.post("/campaigns/welcome_v2/approve", json={"by": "Maria"},
                                     headers=AUTH)  # fmt: skip
        assert approved.status_code == 200 and approved.json()["by"] == "Maria"

    trio.run(_with_service, store_url, body)


def test_bad_requests_say_what_is_wrong_and_change_nothing(store_url: str, tmp_path: Path) -> None:
    secret = tmp_path / "shared.cadence"
    secret.write_text('template leaked email { subject "x" body "x" }\n')

    async def body(service: Service) -> None:
        client = service.client
        broken = SOURCE.replace("send email later", "send email latr").replace("wait 1d", "wait")
        answer = await client.post("/campaigns", content=broken.encode(), headers=AUTH)
        assert answer.status_code == 400
        problems = answer.json()["problems"]
        assert problems and all(p["severity"] == "error" and p["line"] > 0 for p in problems)
        assert "nothing was deployed" in answer.json()["error"]

        unknown = SOURCE.replace("send email later", "send email latr")
        answer = await client.post("/campaigns", content=unknown.encode(), headers=AUTH)
        assert answer.status_code == 400
        ((problem,),) = [answer.json()["problems"]]
        assert "latr" in problem["message"] and problem["line"] == 6
        old_mac = unknown.replace("\n", "\r")  # lines ended by CR alone
        answer = await client.post("/campaigns", content=old_mac.encode(), headers=AUTH)
        assert [p["line"] for p in answer.json()["problems"]] == [6]

        importing = f'import "{secret}"\n' + SOURCE
        answer = await client.post("/campaigns", content=importing.encode(), headers=AUTH)
        assert answer.status_code == 400
        assert "posted source cannot import files" in answer.json()["problems"][0]["message"]

        assert (await client.post("/campaigns", content=b"", headers=AUTH)).status_code == 400
        assert (await client.post("/campaigns", content=b"\xff", headers=AUTH)).status_code == 400
        assert (await client.post("/campaigns", content=SOURCE.encode())).status_code == 401
        assert (await client.get("/campaigns/nope", headers=AUTH)).status_code == 404
        assert (await client.post("/campaigns/nope/launch", headers=AUTH)).status_code == 404
        odd = await client.post("/campaigns/nope/explode", headers=AUTH)
        assert odd.status_code == 404 and "launch" in odd.json()["error"]
        assert (await client.get("/campaigns/nope/launch", headers=AUTH)).status_code == 405
        bad_clone = await client.post("/campaigns/nope/clone", json={}, headers=AUTH)
        assert bad_clone.status_code == 400
        assert (await client.get("/campaigns", headers=AUTH)).json()["campaigns"] == []

    trio.run(_with_service, store_url, body)


def test_posted_source_cannot_read_the_servers_files_as_a_body(
    store_url: str, tmp_path: Path
) -> None:
    """`body file "/etc/..."` in posted source read the server's file into the stored
    campaign (and a send would mail it out), though posted source may not import files for
    that very reason; and the check said which of the folder's files existed."""
    secret = tmp_path / "secret.txt"
    secret.write_text("server-only text\n")

    async def body(service: Service) -> None:
        source = (
            f'template t email {{ subject "x" body file "{secret}"\n'
            f'  locale "es" {{ subject "y" body file "{tmp_path / "secre.txt"}" }} }}\n'
            "campaign leak { on launch { send email t } }\n"
        )
        answer = await service.client.post("/campaigns", content=source.encode(), headers=AUTH)
        assert answer.status_code == 400, answer.text
        problems = answer.json()["problems"]
        assert [(p["line"], p["code"]) for p in problems] == [(1, "E217"), (2, "E217")]
        assert all("posted source cannot read files" in p["message"] for p in problems)
        assert "secret.txt" not in str([p["hint"] for p in problems])  # no did-you-mean
        listed = await service.client.get("/campaigns", headers=AUTH)
        assert listed.json()["campaigns"] == []

    trio.run(_with_service, store_url, body)


def test_source_posted_under_its_file_name_is_the_version_cadence_deploy_made(
    store_url: str, tmp_path: Path
) -> None:
    """A compiled campaign records its file's name, and posted source was always named
    `posted.cadence`: the same file deployed by `cadence deploy`, then posted, was a new
    version (of a live, approved campaign: one waiting for approval). `?file=NAME` names it."""
    path = tmp_path / "welcome.cadence"
    path.write_text(SOURCE)

    async def body(service: Service) -> None:
        (deployed,) = await service.engine.deploy(path)
        named = await service.client.post(
            "/campaigns?file=welcome.cadence", content=SOURCE.encode(), headers=AUTH
        )
        assert named.status_code == 200, named.text
        ((result,),) = [named.json()["deployed"]]
        assert (result["version"], result["created"]) == (deployed.version, False)
        unnamed = await service.client.post("/campaigns", content=SOURCE.encode(), headers=AUTH)
        assert unnamed.json()["deployed"][0]["created"] is True
        for bad in ("../welcome.cadence", "dir/welcome.cadence", "welcome.txt", ".cadence"):
            refused = await service.client.post(
                "/campaigns", params={"file": bad}, content=SOURCE.encode(), headers=AUTH
            )
            assert refused.status_code == 400 and "?file=" in refused.json()["error"], bad
        broken = SOURCE.replace("send email later", "send email latr")
        answer = await service.client.post(
            "/campaigns?file=welcome.cadence", content=broken.encode(), headers=AUTH
        )
        assert answer.json()["problems"][0]["file"] == "welcome.cadence"

    trio.run(_with_service, store_url, body)
