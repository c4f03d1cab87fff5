"""Residents: create or find one by channel id, and bind an address to a grid (grids.yaml coverage).

Must not: keep raw contact data anywhere but the table row (views get the masked value).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from casestore.errors import NotFound
from casestore.models import Resident
from policies.models import Grids


def get_resident(*, session: Session, resident_id: int | None = None, telegram_id: int | None = None) -> Resident:
    stmt = select(Resident)
    stmt = stmt.where(Resident.id == resident_id) if resident_id is not None else stmt.where(Resident.telegram_id == telegram_id)
    resident = session.exec(stmt).first()
    if resident is None:
        raise NotFound(f"resident {resident_id or telegram_id} not found", "没有找到您的登记信息，请先告诉我您的住址。")
    return resident


def get_or_create_resident(*, session: Session, telegram_id: int, now: datetime, display_name: str = "",
                           channel: str = "telegram") -> Resident:
    """The resident for this channel id, created on first contact."""
    found = session.exec(select(Resident).where(Resident.telegram_id == telegram_id)).first()
    if found is not None:
        return found
    resident = Resident(telegram_id=telegram_id, display_name=display_name, channel=channel, created_at=now)
    session.add(resident)
    session.flush()
    return resident


def community_for_estate(grids: Grids, estate: str) -> str | None:
    for c in grids.communities:
        if any(e.name == estate for e in c.estates):
            return c.id
    return None


def bind_address(*, session: Session, resident: Resident, grids: Grids, estate: str, building: int,
                 unit: int | None = None) -> str | None:
    """Store the resident's address and its grid; returns the grid id, or None if no grid covers it."""
    grid_id = grids.grid_for(estate, building)
    resident.estate, resident.building, resident.unit = estate, building, unit
    resident.grid_id = grid_id
    resident.community_id = community_for_estate(grids, estate) or resident.community_id
    session.add(resident)
    session.flush()
    return grid_id


def record_consent(*, session: Session, resident: Resident, now: datetime) -> None:
    resident.consent_at = now
    session.add(resident)
    session.flush()
