"""`cadence webhooks ingest` on both stores: a provider's body from a file, through the engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine
from tests.engine import webhook_payloads as wp
from tests.engine.cadence_cli import run_cadence
from tests.engine.test_runtime import T0, campaigns
from tests.engine.test_webhooks import DAILY, EMAIL, PEOPLE, last, run, suppressions, table_counts


def test_cadence_webhooks_ingest(store_url: str, tmp_path: Path) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: wp.ProviderSink) -> Any:
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(DAILY))
        await engine.launch("daily")
        await engine.run_due()
        return wp.brevo_event("hard_bounce", last(sink, "p1", "email"), T0, email=EMAIL["p1"])

    payload = run(store_url, body)
    good = tmp_path / "bounce.json"
    good.write_text(json.dumps(payload))
    done = run_cadence("webhooks", "ingest", "brevo", str(good), store_url=store_url)
    assert done.returncode == 0, done.stderr
    assert "1 matched" in done.stdout and "1 event(s)" in done.stdout
    again = run_cadence(
        "webhooks", "ingest", "brevo", str(good), "--format", "json", store_url=store_url
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["duplicates"] == 1
    assert suppressions(store_url) == {("email", "p1@example.test", None, "bounced")}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": [{"messageId": "x", "status": {"groupName": 3}}]}))
    before = table_counts(store_url)
    refused = run_cadence("webhooks", "ingest", "infobip", str(bad), store_url=store_url)
    assert refused.returncode == 1
    assert "results[0].status.groupName: expected a string" in refused.stderr
    assert "nothing was written" in refused.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": [')
    assert (
        run_cadence("webhooks", "ingest", "infobip", str(broken), store_url=store_url).returncode
        == 1
    )
    assert table_counts(store_url) == before
