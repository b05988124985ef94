"""A/B verdicts: the statistics against scipy and textbook formulas, the engine's audit line
on both stores, and the verdict in `cadence status` and the dry-run report."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from scipy import stats
from sqlalchemy import select

from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text
from cadence.dsl.symbols import METRIC_EVENTS
from cadence.engine.abtest import (
    MIN_TEST_CONTACTS,
    AbVerdict,
    ab_verdict,
    two_proportion_p_value,
    verdict_text,
    wilson_interval,
)
from cadence.engine.clock import SimulatedClock
from cadence.engine.describe import ab_rate_lines
from cadence.engine.dryrun import dry_run
from cadence.engine.runtime import DeliveryResult, Engine, OutgoingMessage, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import AuditEntry, Enrollment, SplitArrivals
from tests.engine.cadence_cli import run_cadence

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def textbook_z_test(x1: int, n1: int, x2: int, n2: int) -> float:
    """The pooled two-proportion z-test, two-sided, from the formula (no scipy)."""
    pooled = (x1 + x2) / (n1 + n2)
    z = (x1 / n1 - x2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return math.erfc(abs(z) / math.sqrt(2))


def strict_json(verdict: AbVerdict) -> dict[str, Any]:
    """The details through JSON that refuses NaN and infinities, as PostgreSQL would."""
    loaded: dict[str, Any] = json.loads(json.dumps(verdict.as_details(), allow_nan=False))
    return loaded


# ---------------------------------------------------------------------------- pure function


def test_two_variants_match_scipy_and_the_textbook_z_test() -> None:
    verdict = ab_verdict({"a": (100, 10), "b": (100, 20)})
    assert verdict.winner == "b" and verdict.runner_up == "a"
    # By hand: pooled 0.15, se = sqrt(0.15 * 0.85 * 0.02) = 0.0505, z = 0.1 / 0.0505 = 1.980.
    assert verdict.p_value == pytest.approx(0.047670, abs=1e-6)
    assert verdict.p_value == pytest.approx(textbook_z_test(20, 100, 10, 100), rel=1e-9)
    scipy_p = stats.chi2_contingency([[10, 90], [20, 80]], correction=False).pvalue
    assert verdict.chi2_p_value == pytest.approx(scipy_p, rel=1e-9)
    # Without continuity correction, chi-square on a 2x2 table is the z-test squared.
    assert verdict.chi2_p_value == pytest.approx(verdict.p_value, rel=1e-9)
    assert verdict.significant and verdict.reason is None and verdict.confidence == 0.95


def test_wilson_interval_matches_the_published_value_and_scipy() -> None:
    low, high = wilson_interval(10, 100)
    # Wilson's 95% interval for 10/100, as tabulated: 0.0552 to 0.1744.
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)
    reference = stats.binomtest(10, 100).proportion_ci(confidence_level=0.95, method="wilson")
    assert (low, high) == pytest.approx((reference.low, reference.high), rel=1e-9)
    for engaged, sent in ((0, 7), (7, 7), (1, 3), (250, 1000)):
        low, high = wilson_interval(engaged, sent)
        ci = stats.binomtest(engaged, sent).proportion_ci(method="wilson")
        assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-12)
        assert 0.0 <= low <= engaged / sent <= high <= 1.0
    with pytest.raises(ValueError, match="at least one send"):
        wilson_interval(0, 0)


def test_every_variant_carries_its_rate_and_interval() -> None:
    details = strict_json(ab_verdict({"a": (100, 10), "b": (100, 20)}))
    assert details["rates"] == {"a": "0.1", "b": "0.2"}
    a = details["variants"]["a"]
    assert (a["sent"], a["engaged"], a["rate"]) == (100, 10, 0.1)
    assert (round(a["ci_low"], 4), round(a["ci_high"], 4)) == (0.0552, 0.1744)
    assert details["significant"] is True and details["confidence"] == 0.95
    assert details["winner"] == "b" and details["runner_up"] == "a"
    assert details["p_value"] == pytest.approx(0.04767, abs=1e-5)
    assert details["reason"] is None


def test_a_small_difference_is_not_significant_but_still_wins() -> None:
    verdict = ab_verdict({"a": (100, 10), "b": (100, 12)})
    assert verdict.winner == "b"
    assert verdict.p_value == pytest.approx(textbook_z_test(12, 100, 10, 100), rel=1e-9)
    # By hand: pooled 0.11, se = sqrt(0.11 * 0.89 * 0.02) = 0.04425, z = 0.452.
    assert verdict.p_value == pytest.approx(0.6513, abs=1e-4)
    assert not verdict.significant and verdict.reason is None
    assert verdict_text(verdict.as_details()) == "not significant (p=0.65)"


def test_a_large_difference_is_significant() -> None:
    verdict = ab_verdict({"a": (1000, 50), "b": (1000, 100)})
    assert verdict.winner == "b" and verdict.significant
    assert verdict.p_value is not None and verdict.p_value < 1e-4
    assert verdict.p_value == pytest.approx(textbook_z_test(100, 1000, 50, 1000), rel=1e-9)
    assert verdict_text(verdict.as_details()) == "significant (p<0.001)"


def test_a_p_value_of_exactly_0_05_is_not_significant(monkeypatch: pytest.MonkeyPatch) -> None:
    import cadence.engine.abtest as abtest

    monkeypatch.setattr(abtest, "two_proportion_p_value", lambda *counts: 0.05)
    assert not ab_verdict({"a": (100, 10), "b": (100, 20)}).significant
    monkeypatch.setattr(abtest, "two_proportion_p_value", lambda *counts: 0.0499999)
    assert ab_verdict({"a": (100, 10), "b": (100, 20)}).significant


def test_just_below_and_above_the_threshold() -> None:
    # 20/100 vs 10/100: p = 0.0477 (significant); 19/100 vs 10/100: p = 0.0734 (not).
    assert ab_verdict({"a": (100, 10), "b": (100, 20)}).significant
    close = ab_verdict({"a": (100, 10), "b": (100, 19)})
    assert close.p_value == pytest.approx(textbook_z_test(19, 100, 10, 100), rel=1e-9)
    assert close.p_value is not None and 0.05 < close.p_value < 0.1
    assert not close.significant


@pytest.mark.parametrize(
    ("counts", "winner", "runner_up"),
    [
        ({"a": (100, 10), "b": (100, 10)}, "a", "b"),
        ({"b": (100, 10), "a": (100, 10)}, "b", "a"),
        # Equal rates from different counts are a tie too (exact, not floating point).
        ({"a": (30, 10), "b": (90, 30), "c": (60, 5)}, "a", "b"),
    ],
)
def test_ties_go_to_the_first_declared_variant(
    counts: dict[str, tuple[int, int]], winner: str, runner_up: str
) -> None:
    verdict = ab_verdict(counts)
    assert (verdict.winner, verdict.runner_up) == (winner, runner_up)
    assert verdict.p_value == pytest.approx(1.0)
    assert not verdict.significant


@pytest.mark.parametrize(
    ("counts", "winner", "runner_up", "reason"),
    [
        ({"a": (0, 0), "b": (0, 0)}, "a", None, "no sends yet"),
        ({"a": (10, 0), "b": (10, 0)}, "a", "b", "no send was engaged"),
        ({"a": (10, 10), "b": (5, 5)}, "a", "b", "every send was engaged"),
        ({"a": (0, 0), "b": (10, 3)}, "b", None, "only b was sent"),
        ({"a": (10, 3)}, "a", None, "a single variant: nothing to compare"),
    ],
)
def test_degenerate_counts_give_no_test_and_a_reason(
    counts: dict[str, tuple[int, int]], winner: str, runner_up: str | None, reason: str
) -> None:
    verdict = ab_verdict(counts)
    assert (verdict.winner, verdict.runner_up, verdict.reason) == (winner, runner_up, reason)
    assert verdict.p_value is None and verdict.chi2_p_value is None
    assert verdict.significant is False
    details = strict_json(verdict)
    assert details["p_value"] is None and details["significant"] is False
    assert verdict_text(details) == f"no test: {reason}"


def test_a_variant_never_sent_has_no_interval_and_rate_zero() -> None:
    details = strict_json(ab_verdict({"a": (0, 0), "b": (10, 3)}))
    assert details["variants"]["a"] == {
        "sent": 0,
        "delivered": 0,
        "engaged": 0,
        "rate": 0.0,
        "ci_low": None,
        "ci_high": None,
    }
    assert details["rates"] == {"a": "0", "b": "0.3"}


def test_three_variants_chi_square_across_all_and_z_test_for_the_top_two() -> None:
    counts = {"a": (200, 20), "b": (200, 34), "c": (200, 28)}
    verdict = ab_verdict(counts)
    assert (verdict.winner, verdict.runner_up) == ("b", "c")
    table = [[20, 180], [34, 166], [28, 172]]
    assert verdict.chi2_p_value == pytest.approx(
        stats.chi2_contingency(table, correction=False).pvalue, rel=1e-9
    )
    assert verdict.p_value == pytest.approx(textbook_z_test(34, 200, 28, 200), rel=1e-9)
    # The spread across all three is wider than between the top two.
    assert verdict.chi2_p_value is not None and verdict.p_value is not None
    assert verdict.chi2_p_value < verdict.p_value
    assert not verdict.significant
    assert [v.name for v in verdict.variants] == ["a", "b", "c"]


def test_the_top_two_tied_at_one_hundred_percent_have_no_pairwise_test() -> None:
    verdict = ab_verdict({"a": (10, 10), "b": (10, 10), "c": (10, 5)})
    assert verdict.winner == "a" and verdict.runner_up == "b"
    assert verdict.p_value is None and not verdict.significant
    assert verdict.chi2_p_value == pytest.approx(
        stats.chi2_contingency([[10, 0], [10, 0], [5, 5]], correction=False).pvalue
    )
    assert verdict.reason == "a and b both engaged every send"
    strict_json(verdict)


@pytest.mark.parametrize("counts", [{"a": (5, 6)}, {"a": (-1, 0)}, {"a": (5, -1)}, {}])
def test_impossible_counts_are_refused(counts: dict[str, tuple[int, int]]) -> None:
    with pytest.raises(ValueError):
        ab_verdict(counts)


def test_two_proportion_p_value_without_sends_or_variance_is_none() -> None:
    assert two_proportion_p_value(0, 0, 1, 10) is None
    assert two_proportion_p_value(0, 10, 0, 10) is None
    assert two_proportion_p_value(10, 10, 10, 10) is None


def test_verdict_text_on_an_entry_written_before_statistics() -> None:
    assert verdict_text({"winner": "a", "rates": {"a": "0.1", "b": "0"}}) == (
        "no statistics recorded"
    )


# ---------------------------------------------------------------------------- the engine

AB_SOURCE = """
template offer_a email { subject "A" body "<p>a</p>" }
template offer_b email { subject "B" body "<p>b</p>" }
campaign offer {
  on launch {
    split 50% test winner by clicks after 4h {
      a: send email offer_a
      b: send email offer_b
    }
  }
}
"""

CONTACT_COUNT = 120


@dataclass
class RefusingSink(RecordingSink):
    """A provider that refuses, for good, every message to some contacts."""

    refused: set[str] = field(default_factory=set)

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Refuse the messages to refused contacts, record the rest as sent."""
        accepted = [m for m in messages if m.contact_id not in self.refused]
        results = {r.outbox_id: r for r in await super().deliver(accepted)}
        return [
            results.get(m.outbox_id) or DeliveryResult(m.outbox_id, False, error="rejected")
            for m in messages
        ]


def ab_audit(store: Store) -> list[dict[str, Any]]:
    """The details of every `ab_winner` audit line: the verdicts decided."""
    with store.session() as session:
        return list(
            session.scalars(select(AuditEntry.details).where(AuditEntry.action == "ab_winner"))
        )


async def start_test(
    engine: Engine, metric: str, contact_count: int, *, source: str = AB_SOURCE, name: str = "offer"
) -> None:
    """Load the contacts, deploy the A/B campaign `name` of `source` decided by `metric`,
    launch it and let its test sends go out."""
    source = source.replace("winner by clicks", f"winner by {metric}")
    await engine.upsert_contacts(
        [{"id": f"c{i:03}", "email": f"c{i}@example.test"} for i in range(contact_count)]
    )
    await engine.deploy(compile_workspace(load_text(source, "ab.cadence")))
    await engine.launch(name)
    await engine.run_due()
    await engine.run_due()


def run_ab_campaign(
    url: str,
    clicks: dict[str, float],
    contact_count: int = CONTACT_COUNT,
    *,
    send_key: bool = True,
    failing: int = 0,
    metric: str = "clicks",
    name_template: bool = True,
) -> dict[str, Any]:
    """Launch the A/B campaign, click a share of each variant's sends, decide the winner.

    `send_key=False` pushes the clicks as a CRM would, naming the template but not the send
    (nor the template, with `name_template=False`: a hand-written events file);
    the provider refuses for good the sends to the first `failing` contacts. With `metric`
    `conversions` the test is decided by conversions, pushed as a shop reports purchases:
    naming neither the send nor the template.
    """
    clock = SimulatedClock(T0)
    sink = RefusingSink(refused={f"c{i:03}" for i in range(failing)})

    async def main() -> dict[str, Any]:
        async with Engine(url, clock=clock, sink=sink) as engine:
            await start_test(engine, metric, contact_count)
            tested = list(sink.delivered)
            by_variant: dict[str, list[Any]] = {"a": [], "b": []}
            for message in tested:
                by_variant[message.variant].append(message)
            engaged: Counter[str] = Counter()
            clock.advance_to(T0 + dt.timedelta(hours=1))
            for variant, messages in by_variant.items():
                for message in messages[: round(len(messages) * clicks[variant])]:
                    engaged[variant] += 1
                    if metric == "conversions":
                        name, properties = "converted", {"value": 20}
                    else:
                        name, properties = "clicked", {}
                        if name_template:
                            properties["template"] = message.template
                    if send_key:
                        properties["send"] = message.idempotency_key
                    await engine.push_event(
                        {"contact": message.contact_id, "name": name, "properties": properties}
                    )
            clock.advance_to(T0 + dt.timedelta(hours=4, minutes=1))
            await engine.run_due()
            await engine.run_due()

            return {
                "audit": await engine.store.call(ab_audit),
                "counts": {v: (len(m), engaged[v]) for v, m in by_variant.items()},
                "after": [m for m in sink.delivered[len(tested) :]],
                "status": await engine.status(),
            }

    result: dict[str, Any] = trio.run(main)
    return result


def test_the_audit_line_holds_the_verdict_with_its_p_value(store_url: str) -> None:
    result = run_ab_campaign(store_url, {"a": 0.1, "b": 0.7})
    (details,) = result["audit"]
    sent_a, sent_b = result["counts"]["a"][0], result["counts"]["b"][0]
    assert sent_a > 10 and sent_b > 10 and sent_a + sent_b < CONTACT_COUNT
    expected = ab_verdict(result["counts"], audience=CONTACT_COUNT)
    assert details == json.loads(json.dumps(expected.as_details()))
    assert details["winner"] == "b" and details["runner_up"] == "a"
    assert details["significant"] is True
    assert details["p_value"] < 0.001
    assert details["rates"]["b"] == str(expected.variants[1].exact_rate)
    # The held-back share gets the winner.
    assert {m.template for m in result["after"]} == {"offer_b"}
    assert len(result["after"]) == CONTACT_COUNT - sent_a - sent_b
    (row,) = result["status"]
    (test,) = row["ab_tests"]
    assert test["node"] == "ab_split_1" and test["winner"] == "b" and test["significant"]


def test_an_insignificant_winner_is_still_sent_and_reported_as_such(store_url: str) -> None:
    result = run_ab_campaign(store_url, {"a": 0.2, "b": 0.25})
    (details,) = result["audit"]
    expected = ab_verdict(result["counts"], audience=CONTACT_COUNT)
    assert details == json.loads(json.dumps(expected.as_details()))
    assert details["significant"] is False
    assert details["p_value"] is not None and details["p_value"] >= 0.05
    assert {m.template for m in result["after"]} == {f"offer_{details['winner']}"}
    assert verdict_text(details).startswith("not significant (p=")


def test_with_no_engagement_the_first_variant_wins_without_a_test(store_url: str) -> None:
    result = run_ab_campaign(store_url, {"a": 0.0, "b": 0.0})
    (details,) = result["audit"]
    assert details["winner"] == "a" and details["rates"] == {"a": "0", "b": "0"}
    assert details["p_value"] is None and details["significant"] is False
    assert details["reason"] == "no send was engaged"
    assert {m.template for m in result["after"]} == {"offer_a"}


def test_the_test_share_is_exact_and_split_equally(store_url: str) -> None:
    # 50% of 120 contacts: exactly 60 in the test, 30 per variant, 60 held for the winner
    # (a per-contact draw gave "about" 60, and unequal variants).
    result = run_ab_campaign(store_url, {"a": 0.1, "b": 0.7})
    assert result["counts"]["a"][0] == result["counts"]["b"][0] == 30
    assert len(result["after"]) == 60 and {m.variant for m in result["after"]} == {"b"}
    with Store.open(store_url) as store, store.session() as session:
        assert session.scalars(select(SplitArrivals.arrivals)).all() == [CONTACT_COUNT]


def test_a_test_that_sent_nothing_still_ends_and_releases_the_held(store_url: str) -> None:
    # Every test send stopped (no address): the test is over `after` the first arrival and
    # names the first variant; the held contacts go on instead of asking hourly for ever.
    clock = SimulatedClock(T0)
    source = AB_SOURCE
    campaigns = compile_workspace(load_text(source, "ab.cadence"))

    async def main() -> tuple[list[dict[str, Any]], dict[str, int]]:
        async with Engine(store_url, clock=clock, sink=RecordingSink()) as engine:
            await engine.upsert_contacts([{"id": f"c{i}"} for i in range(6)])
            await engine.deploy(campaigns)
            await engine.launch("offer")
            await engine.run_until(T0 + dt.timedelta(hours=6))

            def read(store: Store) -> tuple[list[dict[str, Any]], dict[str, int]]:
                with store.session() as session:
                    audit = list(
                        session.scalars(
                            select(AuditEntry.details).where(AuditEntry.action == "ab_winner")
                        )
                    )
                    statuses = Counter(session.scalars(select(Enrollment.status)))
                return audit, dict(statuses)

            return await engine.store.call(read)

    audit, statuses = trio.run(main)
    (details,) = audit
    assert details["winner"] == "a" and details["reason"] == "no sends yet"
    assert statuses == {"completed": 6}


WINDOWED_AB = """
template offer_a email { subject "A" body "<p>a</p>" }
template offer_b email { subject "B" body "<p>b</p>" }
campaign offer {
  send_window 13:00-18:00
  on launch {
    split 20% test winner by clicks after 4h {
      a: send email offer_a
      b: send email offer_b
    }
  }
}
"""


def test_a_test_waiting_for_the_send_window_runs_its_time_from_its_first_send(
    store_url: str,
) -> None:
    # Launched at 09:00 with a 13:00-18:00 window: the test sends wait for 13:00, and the
    # test runs its 4h from then. It was decided at 13:00 with nothing sent (the first
    # variant, by a tie at zero), and the held share got `a` beside the test.
    clock = SimulatedClock(T0)
    sink = RecordingSink()
    stamps: list[tuple[dt.datetime, str | None]] = []
    campaigns = compile_workspace(load_text(WINDOWED_AB, "ab.cadence"))

    async def deliver(messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        stamps.extend((clock.now(), m.variant) for m in messages)
        return await RecordingSink.deliver(sink, messages)

    sink.deliver = deliver  # type: ignore[method-assign]

    async def main() -> list[tuple[dt.datetime, str | None]]:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts(
                [{"id": f"c{i:03}", "email": f"c{i}@example.test"} for i in range(100)]
            )
            await engine.deploy(campaigns)
            await engine.launch("offer")
            await engine.run_until(T0 + dt.timedelta(hours=5))
            for message in sink.delivered:
                if message.variant == "b":
                    await engine.push_event(
                        {
                            "contact": message.contact_id,
                            "name": "clicked",
                            "properties": {"send": message.idempotency_key},
                        }
                    )
            await engine.run_until(T0 + dt.timedelta(hours=9))
        return stamps

    got = Counter(trio.run(main))
    assert got == {
        (T0 + dt.timedelta(hours=4), "a"): 10,
        (T0 + dt.timedelta(hours=4), "b"): 10,
        (T0 + dt.timedelta(hours=8), "b"): 80,
    }


def test_clicks_that_name_only_the_template_count_for_their_variant(store_url: str) -> None:
    # Engagement pushed without the send's key (a CRM export, a hand-written events file)
    # still says which message was clicked: the contact's send of that template.
    result = run_ab_campaign(store_url, {"a": 0.1, "b": 0.7}, send_key=False)
    (details,) = result["audit"]
    expected = ab_verdict(result["counts"], audience=CONTACT_COUNT)
    assert details == json.loads(json.dumps(expected.as_details()))
    assert details["winner"] == "b" and details["variants"]["b"]["engaged"] > 0
    assert {m.template for m in result["after"]} == {"offer_b"}


@pytest.mark.parametrize("metric", ["clicks", "opens"])
def test_engagement_naming_neither_send_nor_template_counts_as_the_report_counts_it(
    store_url: str, metric: str
) -> None:
    # `{"contact": "c1", "name": "clicked", "at": ...}` is about the contact's latest send,
    # as `cadence report` and `opened(any)` read it. The verdict ignored such events: the
    # report showed b's clicks while the test called itself "no send was engaged" and sent
    # the held contacts a.
    result = run_ab_campaign(
        store_url, {"a": 0.1, "b": 0.7}, send_key=False, name_template=False, metric=metric
    )
    (details,) = result["audit"]
    expected = ab_verdict(result["counts"], audience=CONTACT_COUNT)
    assert details == json.loads(json.dumps(expected.as_details()))
    assert details["winner"] == "b" and details["significant"] is True
    assert {m.template for m in result["after"]} == {"offer_b"}


def test_a_click_counts_as_an_open_in_a_test_by_opens(store_url: str) -> None:
    # A reader with images blocked clicks without an open being tracked; `opened(T)` and
    # the report count that message opened, and so must a test decided by opens. Counting
    # only `opened` events tied the test at no engagement, won by the first variant.
    result = run_ab_campaign(store_url, {"a": 0.1, "b": 0.7}, metric="opens")
    (details,) = result["audit"]
    expected = ab_verdict(result["counts"], audience=CONTACT_COUNT)
    assert details == json.loads(json.dumps(expected.as_details()))
    assert details["winner"] == "b" and details["variants"]["b"]["engaged"] > 0
    assert {m.template for m in result["after"]} == {"offer_b"}


def test_conversions_that_name_no_send_count_for_the_variant_the_report_credits(
    store_url: str,
) -> None:
    # A purchase names neither the email nor its template: `cadence report` credits it to
    # the contact's latest send (last touch), and so must the verdict of a test by
    # conversions. Counting only conversions naming their send made every test a tie,
    # won by the first variant whatever the purchases said.
    result = run_ab_campaign(store_url, {"a": 0.1, "b": 0.7}, send_key=False, metric="conversions")
    (details,) = result["audit"]
    expected = ab_verdict(result["counts"], audience=CONTACT_COUNT)
    assert details == json.loads(json.dumps(expected.as_details()))
    assert details["winner"] == "b" and details["significant"] is True
    assert {m.template for m in result["after"]} == {"offer_b"}


def test_a_conversion_naming_the_test_s_campaign_counts_past_another_campaign_s_send(
    store_url: str,
) -> None:
    # Every test contact gets another campaign's email after its variant; purchases that
    # name the test's campaign are still the variant's (last touch within that campaign),
    # as the report credits them.
    source = (
        AB_SOURCE.replace("winner by clicks", "winner by conversions")
        + """
    template news email { subject "News" body "<p>n</p>" }
    campaign news { on launch { send email news } }
    """
    )
    clock = SimulatedClock(T0)
    sink = RecordingSink()

    async def main() -> list[dict[str, Any]]:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts(
                [{"id": f"c{i:03}", "email": f"c{i}@example.test"} for i in range(CONTACT_COUNT)]
            )
            await engine.deploy(compile_workspace(load_text(source, "ab.cadence")))
            await engine.launch("offer")
            await engine.run_due()
            tested = [m for m in sink.delivered if m.variant is not None]
            clock.advance_to(T0 + dt.timedelta(hours=1))
            await engine.launch("news")
            await engine.run_due()
            clock.advance_to(T0 + dt.timedelta(hours=2))
            b_sends = [m for m in tested if m.variant == "b"]
            await engine.push_events([
                {"contact": m.contact_id, "name": "converted",
                 "properties": {"campaign": "offer", "value": 5}}
                for m in b_sends[: len(b_sends) // 2]
            ])  # fmt: skip
            clock.advance_to(T0 + dt.timedelta(hours=4, minutes=1))
            await engine.run_due()

            return await engine.store.call(ab_audit)

    (details,) = trio.run(main)
    assert details["winner"] == "b"
    assert details["variants"]["b"]["engaged"] == details["variants"]["b"]["sent"] // 2


def test_sends_the_provider_refused_are_not_in_a_variants_rate(store_url: str) -> None:
    result = run_ab_campaign(store_url, {"a": 0.5, "b": 0.5}, failing=40)
    (details,) = result["audit"]
    # The counts are what was delivered: a failed send reached nobody.
    expected = ab_verdict(result["counts"], audience=CONTACT_COUNT)
    assert details == json.loads(json.dumps(expected.as_details()))
    delivered = sum(sent for sent, _ in result["counts"].values())
    assert sum(v["sent"] for v in details["variants"].values()) == delivered


def test_status_prints_the_verdict(store_url: str, tmp_path: Path) -> None:
    run_ab_campaign(store_url, {"a": 0.1, "b": 0.7})
    done = run_cadence("status", store_url=store_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "A/B tests decided" in done.stdout
    line = next(line for line in done.stdout.splitlines() if "ab_split_1" in line)
    assert "offer" in line and " b " in line and "significant (p<0.001)" in line
    assert "not significant" not in line
    assert "engaged/delivered" in done.stdout and "engaged/sent" not in done.stdout


# ---------------------------------------------------------------------------- dry-run


def write_ab_files(tmp_path: Path) -> tuple[Path, Path]:
    source = tmp_path / "ab.cadence"
    source.write_text(AB_SOURCE.replace("by clicks", "by opens"), "utf-8")
    contacts = tmp_path / "contacts.jsonl"
    contacts.write_text(
        "".join(
            json.dumps({"id": f"c{i:03}", "email": f"c{i}@example.test", "timezone": "UTC"}) + "\n"
            for i in range(80)
        ),
        "utf-8",
    )
    return source, contacts


def test_dry_run_report_shows_the_verdict_and_json_stays_as_it_was(tmp_path: Path) -> None:
    source, contacts = write_ab_files(tmp_path)
    report = trio.run(
        lambda: dry_run(
            compile_workspace(load_text(source.read_text("utf-8"), str(source))), contacts,
            start=T0, until=dt.timedelta(days=1), assume={"opened": 0.4}, seed=3,
        )
    )  # fmt: skip
    (test,) = report.ab_tests["offer"]
    assert test["node"] == "ab_split_1" and "p_value" in test
    args = ("dry-run", str(source), "--contacts", str(contacts),
            "--start", "2026-12-01T09:00:00Z", "--until", "1d", "--assume", "opened=0.4",
            "--seed", "3")  # fmt: skip
    done = run_cadence(*args)
    assert done.returncode == 0, done.stderr
    _, title, table = done.stdout.partition("A/B tests decided in this run")
    assert title, done.stdout
    line = next(line for line in table.splitlines() if "ab_split_1" in line)
    assert f" {test['winner']} " in line and verdict_text(test) in line
    # Both variants were sent and opened: a real test, whose outcome the seed fixes.
    assert test["p_value"] is not None and "significant (p=" in line
    rate = test["variants"]["a"]
    assert f"a {rate['rate']:.1%}" in line and f"{rate['engaged']}/{rate['sent']}" in line

    as_json = run_cadence(*args, "--json")
    assert as_json.returncode == 0, as_json.stderr
    lines = [json.loads(text) for text in as_json.stdout.splitlines()]
    assert [line["type"] for line in lines] == ["send"] * (len(lines) - 1) + ["summary"]
    assert len(lines) - 1 == len(report.sends)
    assert set(lines[-1]) == {"type", "sends", "by_template", "enrolled", "completed", "exited"}


def test_status_table_reads_an_entry_written_before_statistics() -> None:
    from rich.console import Console

    from cadence.commands.engine import _ab_table

    console = Console(record=True, width=200)
    legacy = {"winner": "b", "rates": {"a": "0.1", "b": "0.25"}, "node": "ab_split_1"}
    console.print(_ab_table({"offer": [legacy]}, "A/B tests decided"))
    text = console.export_text()
    assert "a 0.1" in text and "b 0.25" in text and "no statistics recorded" in text


def test_under_the_minimum_audience_no_verdict_is_significant() -> None:
    # 10% against 60% clicks: p is far below 0.05 in both cases; only the audience differs.
    counts = {"a": (20, 2), "b": (20, 12)}
    small = ab_verdict(counts, audience=MIN_TEST_CONTACTS - 1)
    assert small.p_value is not None and small.p_value < 0.01
    assert small.winner == "b" and not small.significant
    assert small.reason == "only 99 contacts in the test; an A/B test needs 100"
    assert verdict_text(small.as_details()).endswith(": " + small.reason)
    enough = ab_verdict(counts, audience=MIN_TEST_CONTACTS)
    assert enough.significant and enough.reason is None and enough.p_value == small.p_value
    # Without an audience, the contacts sent a variant are the audience.
    assert ab_verdict(counts).reason == "only 40 contacts in the test; an A/B test needs 100"


def test_a_split_reached_by_too_few_contacts_still_picks_a_winner_but_not_significant(
    store_url: str,
) -> None:
    result = run_ab_campaign(store_url, {"a": 0.0, "b": 0.9}, contact_count=60)
    (details,) = result["audit"]
    assert details["winner"] == "b" and details["p_value"] < 0.05
    assert details["significant"] is False
    assert details["reason"] == "only 60 contacts in the test; an A/B test needs 100"
    # The held share still gets the winner.
    sent_a, sent_b = result["counts"]["a"][0], result["counts"]["b"][0]
    assert len(result["after"]) == 60 - sent_a - sent_b
    assert {m.variant for m in result["after"]} == {"b"}


# ------------------------------------------------------- the verdict reads the report's rates


def decide_after(
    url: str,
    metric: str,
    reactions: Callable[[dict[str, list[OutgoingMessage]]], list[dict[str, Any]]],
) -> tuple[dict[str, Any], dict[str, Any], list[OutgoingMessage]]:
    """Launch the A/B campaign by `metric`, push the events `reactions` makes of each
    variant's test sends, decide the test; its audit details, `cadence report`'s
    `by_variant` (as `--json` prints it) just before, and what the held contacts were sent."""
    clock = SimulatedClock(T0)
    sink = RecordingSink()

    async def main() -> tuple[dict[str, Any], dict[str, Any], list[OutgoingMessage]]:
        async with Engine(url, clock=clock, sink=sink) as engine:
            await start_test(engine, metric, CONTACT_COUNT)
            tested = list(sink.delivered)
            by_variant: dict[str, list[OutgoingMessage]] = {"a": [], "b": []}
            for message in tested:
                by_variant[str(message.variant)].append(message)
            clock.advance_to(T0 + dt.timedelta(hours=1))
            await engine.push_events(reactions(by_variant))
            # Read before the held contacts get the winner, whose sends carry its name too.
            (report,) = await engine.report(["offer"])
            clock.advance_to(T0 + dt.timedelta(hours=4, minutes=1))
            await engine.run_due()
            await engine.run_due()

            (details,) = await engine.store.call(ab_audit)
            return details, report.as_dict()["by_variant"], sink.delivered[len(tested) :]

    result: tuple[dict[str, Any], dict[str, Any], list[OutgoingMessage]] = trio.run(main)
    return result


def event(message: OutgoingMessage, name: str, **properties: Any) -> dict[str, Any]:
    return {"contact": message.contact_id, "name": name, "properties": properties}


def test_the_verdict_s_rates_are_over_delivered_sends_as_the_report_s(store_url: str) -> None:
    # Half of b's sends bounce. Of the 15 that arrived 6 were clicked (40%); a's 30 all
    # arrived and 9 were clicked (30%). The report showed b the better click rate while
    # the verdict, over sends, gave a 30% against b's 20% and sent the held contacts a.
    def reactions(sends: dict[str, list[OutgoingMessage]]) -> list[dict[str, Any]]:
        a, b = sends["a"], sends["b"]
        return [
            *(event(m, "bounced", send=m.idempotency_key) for m in b[:15]),
            *(event(m, "clicked", send=m.idempotency_key) for m in b[15:21]),
            *(event(m, "clicked", send=m.idempotency_key) for m in a[:9]),
        ]

    details, by_variant, after = decide_after(store_url, "clicks", reactions)
    assert by_variant["a"]["rates"]["clicked"] == 0.3
    assert by_variant["b"]["rates"]["clicked"] == 0.4
    assert details["winner"] == "b" and details["runner_up"] == "a"
    b = details["variants"]["b"]
    assert (b["sent"], b["delivered"], b["engaged"], b["rate"]) == (30, 15, 6, 0.4)
    assert details["rates"] == {"a": "0.3", "b": "0.4"}
    expected = ab_verdict({"a": (30, 9), "b": (15, 6)}, audience=CONTACT_COUNT,
                          sent={"a": 30, "b": 30})  # fmt: skip
    assert details == json.loads(json.dumps(expected.as_details()))
    # `cadence status`, the dashboard and the dry-run show the same: engaged of delivered.
    assert ab_rate_lines(details)[1].startswith("b 40.0% [")
    assert ab_rate_lines(details)[1].endswith(" 6/15")
    for name, variant in details["variants"].items():
        assert variant["rate"] == by_variant[name]["rates"]["clicked"]
        assert variant["delivered"] == by_variant[name]["delivered"]
        assert variant["engaged"] == by_variant[name]["clicked"]
    assert {m.variant for m in after} == {"b"}


def test_a_conversion_after_a_bounced_variant_is_not_that_variant_s(store_url: str) -> None:
    # A shop reports purchases naming neither send nor template. 20 of b's 30 emails
    # hard-bounced; 10 of those contacts bought anyway, which no b email brought about.
    # The report credits a conversion to the contact's latest *delivered* send, so b
    # converted 1 of its 10 delivered (10%) against a's 9 of 30 (30%); the verdict
    # credited the bounced sends too (11 of 30, 36.7%) and sent the held contacts b.
    def reactions(sends: dict[str, list[OutgoingMessage]]) -> list[dict[str, Any]]:
        a, b = sends["a"], sends["b"]
        return [
            *(event(m, "bounced", send=m.idempotency_key) for m in b[:20]),
            *(event(m, "converted", value=10) for m in b[10:21]),
            *(event(m, "converted", value=10) for m in a[:9]),
        ]

    details, by_variant, after = decide_after(store_url, "conversions", reactions)
    assert by_variant["b"]["delivered"] == 10 and by_variant["b"]["converted"] == 1
    assert by_variant["a"]["converted"] == 9
    assert details["winner"] == "a"
    assert details["variants"]["b"]["engaged"] == 1
    assert details["variants"]["b"]["delivered"] == 10
    assert details["variants"]["a"]["engaged"] == 9
    assert {m.variant for m in after} == {"a"}


def test_a_variant_nothing_reached_does_not_beat_one_that_was_read() -> None:
    # Every one of a's sends bounced: a has no rate to speak of, not a 0% that ties b's
    # 0 clicks of 50 and wins as the first declared.
    verdict = ab_verdict({"a": (0, 0), "b": (50, 0)}, audience=100, sent={"a": 50, "b": 50})
    assert verdict.winner == "b" and verdict.runner_up is None
    assert verdict.p_value is None and not verdict.significant
    assert verdict.reason == "only b was delivered"
    a = verdict.variants[0]
    assert (a.sent, a.delivered, a.engaged, a.ci_low, a.ci_high) == (50, 0, 0, None, None)
    nothing = ab_verdict({"a": (0, 0), "b": (0, 0)}, sent={"a": 5, "b": 5})
    assert nothing.winner == "a" and nothing.reason == "no send was delivered"
    assert ab_verdict({"a": (0, 0), "b": (0, 0)}).reason == "no sends yet"


def test_a_variant_whose_every_send_bounced_loses_to_one_read_without_clicks(
    store_url: str,
) -> None:
    # The engine's side: a's 30 emails all hard-bounce, b's 30 arrive and nobody clicks.
    def reactions(sends: dict[str, list[OutgoingMessage]]) -> list[dict[str, Any]]:
        return [event(m, "bounced", send=m.idempotency_key) for m in sends["a"]]

    details, by_variant, after = decide_after(store_url, "clicks", reactions)
    assert by_variant["a"]["delivered"] == 0 and by_variant["b"]["delivered"] == 30
    assert details["winner"] == "b" and details["reason"] == "only b was delivered"
    assert {m.variant for m in after} == {"b"}


def test_a_variant_with_nothing_delivered_shows_no_rate() -> None:
    # The performance tables show `-` for a rate over nothing; the A/B line said 0.0%.
    verdict = ab_verdict({"a": (0, 0), "b": (40, 4)}, sent={"a": 40, "b": 40})
    assert ab_rate_lines(verdict.as_details())[0] == "a - 0/0"
    assert ab_rate_lines(verdict.as_details())[1].startswith("b 10.0% [")


def test_more_delivered_than_sent_is_refused() -> None:
    with pytest.raises(ValueError, match="variant 'a': 6 delivered of 5 sent"):
        ab_verdict({"a": (6, 1), "b": (5, 1)}, sent={"a": 5, "b": 5})


def test_two_engines_deciding_one_test_at_once_freeze_one_verdict(store_url: str) -> None:
    # Two engines step held contacts of one split when its time is up: each found no
    # verdict and wrote its own (PostgreSQL: neither saw the other's uncommitted line), so
    # `cadence status` listed the test twice, and an event arriving between the two could
    # send half the held contacts one winner and half the other. The second now waits for
    # the first's transaction and takes the verdict it froze.
    import threading

    from cadence.dsl import compiled as c
    from cadence.engine.store.models import CampaignVersion

    clock = SimulatedClock(T0)

    async def main() -> tuple[list[str | None], int]:
        async with Engine(store_url, clock=clock, sink=RecordingSink()) as engine:
            await start_test(engine, "clicks", CONTACT_COUNT)
            clock.advance_to(T0 + dt.timedelta(hours=4, minutes=1))
            store = engine.store.store
            with store.session() as session:
                version_id = session.scalars(select(CampaignVersion.id)).one()
                compiled = engine._version(session, version_id)[1]
            node = next(n for n in compiled.nodes if isinstance(n, c.ABSplitNode))
            first_decided, go_on = threading.Event(), threading.Event()
            winners: list[str | None] = []

            def first() -> None:
                with store.session() as session:
                    winners.append(engine._ab_winner(session, version_id, node))
                    first_decided.set()
                    go_on.wait(10)

            def second() -> None:
                first_decided.wait(10)
                with store.session() as session:
                    winners.append(engine._ab_winner(session, version_id, node))

            def release() -> None:
                first_decided.wait(10)
                # Long enough for the second engine to decide, had it not waited.
                threading.Event().wait(1.0)
                go_on.set()

            async with trio.open_nursery() as nursery:
                for work in (first, second, release):
                    nursery.start_soon(trio.to_thread.run_sync, work)
            return winners, len(ab_audit(store))

    winners, verdicts = trio.run(main)
    assert winners == ["a", "a"]
    assert verdicts == 1


@pytest.mark.parametrize("metric", sorted(METRIC_EVENTS))
def test_every_winner_metric_picks_the_variant_the_report_rates_best(
    store_url: str, metric: str
) -> None:
    # `winner by opens | clicks | replies | conversions`: each its own event, counted on the
    # report's row for that metric.
    name = METRIC_EVENTS[metric]

    def reactions(sends: dict[str, list[OutgoingMessage]]) -> list[dict[str, Any]]:
        a, b = sends["a"], sends["b"]
        return [event(m, name, send=m.idempotency_key) for m in [*a[:3], *b[:12]]]

    details, by_variant, after = decide_after(store_url, metric, reactions)
    assert details["winner"] == "b" and details["significant"] is True
    for variant, counted in details["variants"].items():
        assert counted["engaged"] == by_variant[variant][name]
        assert counted["rate"] == by_variant[variant]["rates"][name]
    assert {m.variant for m in after} == {"b"}


def test_the_report_carries_the_decided_test(store_url: str, tmp_path: Path) -> None:
    # `cadence report --json` gave the variants' rows (with the held contacts' winner sends
    # counted in the winner's) and nothing of the decision: what won, on which counts.
    result = run_ab_campaign(store_url, {"a": 0.1, "b": 0.7})
    (details,) = result["audit"]
    done = run_cadence("report", "--json", store_url=store_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (report,) = [json.loads(line) for line in done.stdout.splitlines()]
    (test,) = report["ab_tests"]
    assert test["node"] == "ab_split_1" and len(test["version"]) == 12
    assert {k: v for k, v in test.items() if k not in ("node", "version")} == details
    # The winner's row counts its held sends too; the test's own counts are the verdict's.
    assert report["by_variant"]["b"]["sent"] == details["variants"]["b"]["sent"] + 60
    by_variant = run_cadence("report", "--by", "variant", store_url=store_url, cwd=tmp_path)
    assert by_variant.returncode == 0, by_variant.stderr
    _, title, table = by_variant.stdout.partition("A/B tests decided")
    assert title and "ab_split_1" in table and "significant (p<0.001)" in table


TWO_TESTS = """
template s1a email { subject "1a" body "<p>x</p>" }
template s1b email { subject "1b" body "<p>x</p>" }
template s2a email { subject "2a" body "<p>x</p>" }
template s2b email { subject "2b" body "<p>x</p>" }
campaign two {
  cap email 5 per 1d
  on launch {
    split 50% test winner by clicks after 4h { a: send email s1a  b: send email s1b }
    wait 1d
    split 50% test winner by clicks after 8h { a: send email s2a  b: send email s2b }
  }
}
"""


def test_a_second_test_with_the_same_variant_names_counts_only_its_own_sends(
    store_url: str,
) -> None:
    # Both splits name their variants a and b, and sends carry only the name. The second
    # test took the first's sends for its own: its time ran from the first test's sends,
    # so it was decided as its first contact arrived, on the first test's counts (b's 25
    # clicks), and every contact got s2b. It is a's, 10 clicks of 30 to 3 of 30.
    clock = SimulatedClock(T0)
    sink = RecordingSink()
    day = dt.timedelta(days=1)

    async def main() -> list[dict[str, Any]]:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await start_test(engine, "clicks", CONTACT_COUNT, source=TWO_TESTS, name="two")
            first_b = [m for m in sink.delivered if m.template == "s1b"]
            await engine.push_events(
                [event(m, "clicked", send=m.idempotency_key) for m in first_b[:25]]
            )
            # Split 1's test contacts reach split 2 at day 1, its held ones 4h later.
            await engine.run_until(T0 + day + dt.timedelta(hours=5))
            second = {v: [m for m in sink.delivered if m.template == f"s2{v}"] for v in "ab"}
            assert len(second["a"]) == len(second["b"]) == 30
            await engine.push_events([
                *(event(m, "clicked", send=m.idempotency_key) for m in second["a"][:10]),
                *(event(m, "clicked", send=m.idempotency_key) for m in second["b"][:3]),
            ])  # fmt: skip
            await engine.run_until(T0 + day + dt.timedelta(hours=9))
            return await engine.store.call(ab_audit)

    first, second = trio.run(main)
    assert first["winner"] == "b" and first["variants"]["b"]["engaged"] == 25
    assert second["winner"] == "a"
    assert second["variants"]["a"] == {**second["variants"]["a"], "delivered": 30, "engaged": 10}
    assert second["variants"]["b"] == {**second["variants"]["b"], "delivered": 30, "engaged": 3}
