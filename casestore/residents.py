"""Residents: read one, bind an address to a grid (grids.yaml coverage), record consent and a call-back phone.

Finding or creating a resident from a channel account is `casestore.accounts`. Every change here writes its
audit event in the caller's transaction.
Must not: keep raw contact data anywhere but the table row (views and audit events get the masked value).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from casestore.audit import record_audit
from casestore.errors import NotFound
from casestore.models import Resident
from policies.models import Grids


def get_resident(*, session: Session, resident_id: int) -> Resident:
    resident = session.get(Resident, resident_id)
    if resident is None:
        raise NotFound(f"resident {resident_id} not found", "没有找到您的登记信息，请先告诉我您的住址。")
    return resident


def community_for_estate(grids: Grids, estate: str) -> str | None:
    for c in grids.communities:
        if any(e.name == estate for e in c.estates):
            return c.id
    return None


def bind_address(*, session: Session, resident: Resident, grids: Grids, estate: str, building: int,
                 unit: int | None = None, now: datetime) -> str | None:
    """Store the resident's address and its grid; returns the grid id, or None if no grid covers it."""
    grid_id = grids.grid_for(estate, building)
    resident.estate, resident.building, resident.unit = estate, building, unit
    resident.grid_id = grid_id
    resident.community_id = community_for_estate(grids, estate) or resident.community_id
    session.add(resident)
    session.flush()
    record_audit(session=session, actor=f"resident:{resident.id}", action="bind_address",
                 subject=f"resident:{resident.id}", now=now, data={"grid": grid_id, "estate": estate})
    return grid_id


def record_consent(*, session: Session, resident: Resident, now: datetime) -> None:
    resident.consent_at = now
    session.add(resident)
    session.flush()
    record_audit(session=session, actor=f"resident:{resident.id}", action="consent", subject=f"resident:{resident.id}",
                 now=now)


def update_contact_phone(*, session: Session, resident: Resident, phone: str, masked: str, now: datetime) -> bool:
    """Keep the resident's own call-back phone (raw on the row, masked elsewhere); False if unchanged."""
    if resident.contact_phone == phone:
        return False
    resident.contact_phone, resident.contact_masked = phone, masked
    session.add(resident)
    session.flush()
    record_audit(session=session, actor=f"resident:{resident.id}", action="change_contact",
                 subject=f"resident:{resident.id}", now=now, data={"contact": masked})
    return True
