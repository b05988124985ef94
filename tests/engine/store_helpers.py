"""Seeding helpers for the store tests: tenants, contacts, a campaign version, enrollments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cadence.engine.store import Store
from cadence.engine.store.models import Campaign, CampaignVersion, Contact, Enrollment

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def seed_enrollments(
    store: Store,
    count: int,
    *,
    tenant_id: str = "default",
    due_at: datetime = T0,
    spacing: timedelta = timedelta(seconds=1),
    campaign: str = "welcome",
) -> list[int]:
    """Create a tenant, `count` contacts, one campaign version and an enrollment per contact."""
    store.ensure_tenant(tenant_id, now=T0)
    with store.session() as session:
        session.add_all(
            Contact(
                tenant_id=tenant_id,
                id=f"c{i}",
                attributes={},
                tags=[],
                created_at=T0,
                updated_at=T0,
            )
            for i in range(count)
        )
        row = Campaign(
            tenant_id=tenant_id, name=campaign, display_name=campaign, created_at=T0, updated_at=T0
        )
        session.add(row)
        session.flush()
        version = CampaignVersion(
            tenant_id=tenant_id, campaign_id=row.id, content_hash="h1", compiled={}, created_at=T0
        )
        session.add(version)
        session.flush()
        enrollments = [
            Enrollment(
                tenant_id=tenant_id,
                version_id=version.id,
                contact_id=f"c{i}",
                node="start",
                due_at=due_at + spacing * i,
                created_at=T0,
                updated_at=T0,
            )
            for i in range(count)
        ]
        session.add_all(enrollments)
        session.flush()
        return [enrollment.id for enrollment in enrollments]
