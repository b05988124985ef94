"""Deploy, enroll, pause, enqueue and gate sends, assign agents: the store's bulk operations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from store_helpers import T0

from cadence.engine.store import Store, StoreError
from cadence.engine.store.agents import add_agent, next_agent
from cadence.engine.store.campaigns import (
    cancel_enrollments,
    enroll_contacts,
    enrolled_contact_ids,
    enrollment_counts,
    hold_enrollments,
    migrate_enrollments,
    record_audit,
    release_held_enrollments,
    save_campaign_version,
    set_campaign_status,
)
from cadence.engine.store.claims import claim_enrollments
from cadence.engine.store.importer import upsert_contact_dicts
from cadence.engine.store.models import (
    AuditEntry,
    Campaign,
    CampaignStatus,
    ConsentStatus,
    Enrollment,
    OutboxMessage,
    OutboxStatus,
    SendLog,
)
from cadence.engine.store.sends import (
    NewSend,
    add_suppressions,
    confirm_double_opt_in,
    consent_statuses,
    enqueue_sends,
    idempotency_key,
    pending_double_opt_in,
    send_counts_since,
    suppressed_contacts,
)

IDS = [f"c{i}" for i in range(5)]


@pytest.fixture
def people(store: Store) -> list[str]:
    """Five contacts in tenant `default`."""
    upsert_contact_dicts(store, [{"id": i, "email": f"{i}@x.test"} for i in IDS], now=T0)
    return IDS


def test_deploy_stores_each_hash_once_and_tracks_the_current_version(
    store: Store, people: list[str]
) -> None:
    with store.session() as session:
        first = save_campaign_version(
            session,
            "default",
            "welcome",
            compiled={"n": 1},
            content_hash="a",
            now=T0,
            display_name="Welcome series",
        )
        again = save_campaign_version(
            session, "default", "welcome", compiled={"n": 1}, content_hash="a", now=T0
        )
        second = save_campaign_version(
            session, "default", "welcome", compiled={"n": 2}, content_hash="b", now=T0
        )
    assert first.created and not again.created and second.created
    assert first.version_id == again.version_id != second.version_id
    assert first.campaign_id == second.campaign_id
    with store.session() as session:
        campaign = session.scalar(select(Campaign))
        assert campaign is not None
        assert campaign.current_version_id == second.version_id
        assert (campaign.display_name, campaign.status) == ("Welcome series", "draft")
        set_campaign_status(session, "default", "welcome", CampaignStatus.ACTIVE, now=T0)
        with pytest.raises(StoreError, match="no campaign 'nope'"):
            set_campaign_status(session, "default", "nope", CampaignStatus.ACTIVE, now=T0)


def test_enrolling_twice_enrolls_once_and_pause_resume_flip_everything(
    store: Store, people: list[str]
) -> None:
    with store.session() as session:
        version = save_campaign_version(
            session, "default", "welcome", compiled={}, content_hash="a", now=T0
        ).version_id
        first = enroll_contacts(
            session, "default", version, IDS[:3], node="n1", due_at=T0, now=T0, priority=5
        )
        second = enroll_contacts(
            session, "default", version, IDS, node="n1", due_at=T0, now=T0, priority=5
        )
        again = enroll_contacts(
            session, "default", version, IDS[:1], node="n1", due_at=T0, now=T0, occurrence=1,
            priority=5,
        )  # fmt: skip
    assert (first, second, again) == (IDS[:3], IDS[3:], IDS[:1])

    with store.session() as session:
        assert hold_enrollments(session, [version], now=T0) == 6
        assert (
            claim_enrollments(
                session, "w", now=T0, limit=10, tenant_id="default", lease_for=timedelta(1)
            )
            == []
        )
        assert enrollment_counts(session, "default") == {"welcome": {"paused": 6}}
    with store.session() as session:
        assert release_held_enrollments(session, [version], now=T0) == 6
        claimed = claim_enrollments(
            session, "w", now=T0, limit=10, tenant_id="default", lease_for=timedelta(1)
        )
        assert len(claimed) == 6
        assert enrolled_contact_ids(session, [version], ["c0", "c4", "zz"]) == {"c0", "c4"}
        assert cancel_enrollments(session, [version], now=T0) == 6
        assert enrollment_counts(session, "default") == {"welcome": {"cancelled": 6}}


def test_reentry_enrolls_a_mixed_batch_in_one_call(store: Store, people: list[str]) -> None:
    with store.session() as session:
        version = save_campaign_version(
            session, "default", "welcome", compiled={}, content_hash="a", now=T0
        ).version_id
        enroll_contacts(
            session, "default", version, IDS[:2], node="n1", due_at=T0, now=T0, priority=5
        )
        mixed = enroll_contacts(
            session, "default", version, IDS[:3], node="n1", due_at=T0, now=T0,
            occurrences={"c0": 1, "c1": 0}, priority=5,
        )  # fmt: skip
    assert mixed == ["c0", "c2"]  # c0 re-enters as occurrence 1; c1 is already in 0
    with store.session() as session:
        rows = session.execute(select(Enrollment.contact_id, Enrollment.occurrence)).all()
    assert sorted((cid, n) for cid, n in rows) == [("c0", 0), ("c0", 1), ("c1", 0), ("c2", 0)]


def test_unfinished_enrollments_move_to_a_new_version_by_node_name(
    store: Store, people: list[str]
) -> None:
    with store.session() as session:
        old = save_campaign_version(
            session, "default", "welcome", compiled={}, content_hash="a", now=T0
        ).version_id
        new = save_campaign_version(
            session, "default", "welcome", compiled={}, content_hash="b", now=T0
        ).version_id
        enroll_contacts(
            session, "default", new, ["c0"], node="start", due_at=T0, now=T0, priority=5
        )
        # c0 enters a campaign once, whatever the version: its row in the old one is
        # written by hand, as a store kept it from before that rule.
        enroll_contacts(session, "default", old, IDS, node="wait_2d", due_at=T0, now=T0, priority=5)
        assert enrolled_contact_ids(session, [old], IDS) == set(IDS) - {"c0"}
        session.add(
            Enrollment(
                tenant_id="default", version_id=old, contact_id="c0", occurrence=0,
                node="wait_2d", status="active", due_at=T0, attempts=0, state={}, history=[],
                priority_rank=-5, created_at=T0, updated_at=T0,
            )
        )  # fmt: skip
        moved = migrate_enrollments(
            session, old, new, node_map={"wait_2d": "wait_3d"}, now=T0, priority=8
        )
    assert moved == 4  # c0 is already in the new version
    with store.session() as session:
        rows = session.execute(
            select(Enrollment.version_id, Enrollment.node, Enrollment.priority_rank)
        ).all()
    # Those moved take the new version's priority.
    assert sorted(rows) == sorted(
        [(old, "wait_2d", -5), (new, "start", -5)] + [(new, "wait_3d", -8)] * 4
    )


def test_outbox_enqueue_is_idempotent(store: Store, people: list[str]) -> None:
    key = idempotency_key(7, "send_welcome", "c1", 0)
    assert key == idempotency_key(7, "send_welcome", "c1", 0) != idempotency_key(7, "x", "c1", 0)
    sends = [
        NewSend(key, "c1", "email", template="welcome", payload={"subject": "Hi"}),
        NewSend(idempotency_key(7, "send_welcome", "c2", 0), "c2", "email", template="welcome"),
    ]
    with store.session() as session:
        assert len(enqueue_sends(session, "default", sends, now=T0)) == 2
    with store.session() as session:  # a restart re-enqueues the same sends
        assert enqueue_sends(session, "default", [*sends, sends[0]], now=T0) == []
        total = session.scalar(select(func.count()).select_from(OutboxMessage))
        assert total == 2
        counts = send_counts_since(session, "default", "email", IDS, T0 - timedelta(days=7))
        assert counts == {"c1": 1, "c2": 1}
        assert send_counts_since(session, "default", "sms", IDS, T0) == {}
        assert send_counts_since(session, "default", None, IDS, T0 + timedelta(seconds=1)) == {}
    with store.session() as session:
        message = session.scalar(select(OutboxMessage).where(OutboxMessage.contact_id == "c1"))
        assert message is not None and message.status == OutboxStatus.PENDING.value
        assert message.next_attempt_at == T0 and message.payload == {"subject": "Hi"}


def test_sends_enqueued_claimed_return_their_ids_once_and_fall_back_to_the_outbox_claim(
    store: Store, people: list[str]
) -> None:
    from cadence.engine.store.claims import claim_outbox
    from cadence.engine.store.sends import enqueue_claimed_sends

    sends = [
        NewSend(idempotency_key(7, "n", cid, 0), cid, "email", template="t", payload={"i": i})
        for i, cid in enumerate(IDS[:3])
    ]
    lease = timedelta(minutes=5)
    with store.session() as session:
        fresh = enqueue_claimed_sends(
            session, "default", [*sends, sends[0]], owner="w1", now=T0, lease_until=T0 + lease
        )
    assert [send.contact_id for _, send in fresh] == IDS[:3]
    with store.session() as session:
        rows = {
            row.id: row
            for row in session.execute(
                select(OutboxMessage.id, OutboxMessage.contact_id, OutboxMessage.lease_owner,
                       OutboxMessage.payload)
            )
        }  # fmt: skip
        assert {rows[i].contact_id for i, _ in fresh} == set(IDS[:3])
        assert all(rows[i].lease_owner == "w1" for i, _ in fresh)
        assert rows[fresh[1][0]].payload == {"i": 1}
        # A second enqueue of the same keys (a restart) adds nothing and returns nothing.
        again = enqueue_claimed_sends(
            session, "default", sends, owner="w2", now=T0, lease_until=T0 + lease
        )
        assert again == []
        # While the lease lives nobody else claims them; once it runs out, anyone does.
        assert (
            claim_outbox(
                session, "w2", now=T0 + lease / 2, limit=10, tenant_id="default", lease_for=lease
            )
            == []
        )
        taken = claim_outbox(
            session, "w2", now=T0 + lease, limit=10, tenant_id="default", lease_for=lease
        )
        assert sorted(row.id for row in taken) == sorted(i for i, _ in fresh)


def test_sends_recorded_as_sent_by_group_log_each_once_and_skip_lost_leases(
    store: Store, people: list[str]
) -> None:
    """`record_sent` writes outcome and log per group; a send another worker took is left."""
    from decimal import Decimal

    from cadence.engine.store.claims import claim_outbox, record_sent
    from cadence.engine.store.sends import enqueue_claimed_sends

    lease = timedelta(minutes=5)
    with store.session() as session:
        fresh = enqueue_claimed_sends(
            session, "default",
            [NewSend(idempotency_key(7, "n", cid, 0), cid, "email", template="t") for cid in IDS],
            owner="w1", now=T0, lease_until=T0 + lease,
        )  # fmt: skip
    ids = [outbox_id for outbox_id, _ in fresh]
    # The last send's lease ran out and another worker claimed it meanwhile.
    with store.session() as session:
        taken = claim_outbox(
            session, "w2", now=T0 + lease, limit=10, tenant_id="default", lease_for=lease
        )
    assert [row.id for row in taken] == ids
    with store.session() as session:
        # ... so give all but the last back to w1, as if w2 had never looked at them.
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id.in_(ids[:-1])).values(lease_owner="w1")
        )
    later = T0 + timedelta(minutes=6)
    with store.session() as session:
        lost = record_sent(
            session, "w1",
            {("sink", Decimal("0.001"), "USD"): ids[:2], (None, None, None): ids[2:]},
            now=later,
        )  # fmt: skip
    assert lost == ids[-1:]
    with store.session() as session:
        rows = {row.id: row for row in session.scalars(select(OutboxMessage))}
        log = session.execute(
            select(SendLog.outbox_id, SendLog.contact_id, SendLog.channel, SendLog.at,
                   SendLog.outcome, SendLog.provider, SendLog.cost, SendLog.currency,
                   SendLog.detail).order_by(SendLog.outbox_id)
        ).all()  # fmt: skip
    for outbox_id in ids[:-1]:
        row = rows[outbox_id]
        assert (row.status, row.sent_at, row.lease_owner) == (OutboxStatus.SENT.value, later, None)
    assert rows[ids[-1]].status == OutboxStatus.PENDING.value
    assert rows[ids[-1]].lease_owner == "w2"
    contact = {outbox_id: send.contact_id for outbox_id, send in fresh}
    assert [tuple(entry) for entry in log] == [
        (i, contact[i], "email", later, "sent", "sink", Decimal("0.001"), "USD", {})
        for i in ids[:2]
    ] + [(i, contact[i], "email", later, "sent", None, None, None, {}) for i in ids[2:-1]]


def test_suppressions_by_address_or_contact_and_their_expiry(
    store: Store, people: list[str]
) -> None:
    with store.session() as session:
        add_suppressions(
            session, "default", "email", [("c1@x.test", None)], reason="bounce", now=T0
        )
        add_suppressions(session, "default", "email", [(None, "c2")], reason="unsubscribed", now=T0)
        add_suppressions(
            session,
            "default",
            "email",
            [("c3@x.test", "c3")],
            reason="complaint",
            now=T0,
            expires_at=T0 + timedelta(days=1),
        )
        add_suppressions(session, "default", "sms", [(None, "c4")], reason="stop", now=T0)
        add_suppressions(session, "default", "email", [("c1@x.test", None)], reason="again", now=T0)
    recipients = [(i, f"{i}@x.test") for i in IDS]
    with store.session() as session:
        assert suppressed_contacts(session, "default", "email", recipients, now=T0) == {
            "c1",
            "c2",
            "c3",
        }
        later = T0 + timedelta(days=2)
        assert suppressed_contacts(session, "default", "email", recipients, now=later) == {
            "c1",
            "c2",
        }
        assert suppressed_contacts(session, "default", "sms", recipients, now=T0) == {"c4"}
        assert suppressed_contacts(session, "other", "email", recipients, now=T0) == set()


def test_an_email_suppression_matches_the_address_in_any_case(
    store: Store, people: list[str]
) -> None:
    # "Old@X.test" as stored before emails were folded still stops that contact; the
    # folded form stops the mailbox however a contact writes it.
    with store.session() as session:
        add_suppressions(session, "default", "email", [("Old@X.test", None)], reason="r", now=T0)
        add_suppressions(session, "default", "email", [("new@x.test", None)], reason="r", now=T0)
        add_suppressions(session, "default", "sms", [("+4915100000", None)], reason="r", now=T0)
    recipients = [("a", "Old@X.test"), ("b", "old@x.test"), ("c", "NEW@x.test"), ("d", "x@x.test")]
    with store.session() as session:
        assert suppressed_contacts(session, "default", "email", recipients, now=T0) == {"a", "c"}
        phones = [("e", "+4915100000")]
        assert suppressed_contacts(session, "default", "sms", phones, now=T0) == {"e"}


def test_consent_and_double_opt_in(store: Store, people: list[str]) -> None:
    from cadence.engine.store.sends import set_consent

    with store.session() as session:
        set_consent(session, "default", "c1", "sms", ConsentStatus.GRANTED, now=T0, source="form")
        set_consent(
            session,
            "default",
            "c2",
            "sms",
            ConsentStatus.PENDING,
            now=T0,
            double_opt_in_token="tok-123",
        )
    with store.session() as session:
        assert consent_statuses(session, "default", "sms", IDS) == {
            "c1": ConsentStatus.GRANTED,
            "c2": ConsentStatus.PENDING,
        }
        assert pending_double_opt_in(session, "default", "wrong", lock=True) is None
        waiting = pending_double_opt_in(session, "default", "tok-123", lock=True)
        assert waiting is not None
        confirmed = confirm_double_opt_in(session, waiting, now=T0 + timedelta(hours=1))
        assert confirmed.confirmed_at == T0 + timedelta(hours=1)
        assert pending_double_opt_in(session, "default", "tok-123") is None  # single use
    with store.session() as session:
        set_consent(session, "default", "c1", "sms", ConsentStatus.WITHDRAWN, now=T0)
        statuses = consent_statuses(session, "default", "sms", IDS)
    assert statuses == {"c1": ConsentStatus.WITHDRAWN, "c2": ConsentStatus.GRANTED}


def test_round_robin_cycles_through_active_agents(store: Store) -> None:
    store.ensure_tenant("default", now=T0)
    with store.session() as session:
        assert next_agent(session, "default", now=T0) is None
        for name in ("ana", "ben", "cy"):
            add_agent(session, "default", name, now=T0)
        add_agent(session, "default", "dee", now=T0, pool="vip")
    picked = []
    for _ in range(4):
        with store.session() as session:
            agent = next_agent(session, "default", now=T0)
            assert agent is not None
            picked.append(agent.name)
    assert picked == ["ana", "ben", "cy", "ana"]
    with store.session() as session:
        vip = next_agent(session, "default", now=T0, pool="vip")
        assert vip is not None and vip.name == "dee"


def test_audit_log(store: Store) -> None:
    store.ensure_tenant("default", now=T0)
    with store.session() as session:
        record_audit(
            session,
            "default",
            actor="cli",
            action="launch",
            subject_type="campaign",
            subject_id="welcome",
            now=T0,
            details={"version": 1},
        )
    with store.session() as session:
        entry = session.scalar(select(AuditEntry))
        assert entry is not None and (entry.action, entry.details) == ("launch", {"version": 1})


def test_upserting_the_same_id_twice_in_one_batch_merges_the_records(store: Store) -> None:
    from cadence.engine.store.importer import upsert_contacts
    from cadence.engine.store.models import Contact
    from cadence.engine.store.records import ContactRecord

    store.ensure_tenant("default", now=T0)
    records = [
        ContactRecord("c1", {"email": "a@x.test"}, {"city": "Manila", "plan": "free"}),
        ContactRecord("c1", {"first_name": "Ana"}, {"plan": "pro"}),
    ]
    with store.session() as session:
        assert upsert_contacts(session, "default", records, now=T0) == (1, 0)
    with store.session() as session:
        contact = session.get(Contact, ("default", "c1"))
        assert contact is not None
        assert (contact.email, contact.first_name) == ("a@x.test", "Ana")
        assert contact.attributes == {"city": "Manila", "plan": "pro"}
