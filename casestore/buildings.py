"""Cases by building, for the console's map and hotspots (网格与热点): a case's building is the bound address of
the resident who reported it (Resident.estate / building).

Owns: open cases per building, a building's cases, a hotspot's cases, buildings and reporters.
Must not: decide who may see them (callers pass the grid ids of their scope) or change anything.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from casestore.models import OPEN_STATUSES, Case, Hotspot, Resident

Building = tuple[str, int]  # (estate, number)


def open_cases_by_building(*, session: Session, grid_ids: Collection[str] | None = None) -> dict[Building, int]:
    """{(estate, number): open cases} for the buildings with any (in `grid_ids`, when given)."""
    stmt = (select(col(Resident.estate), col(Resident.building), func.count())
            .select_from(Case).join(Resident, col(Resident.id) == col(Case.resident_id))
            .where(col(Case.status).in_([s.value for s in OPEN_STATUSES]), col(Resident.estate).is_not(None),
                   col(Resident.building).is_not(None))
            .group_by(col(Resident.estate), col(Resident.building)))
    if grid_ids is not None:
        stmt = stmt.where(col(Case.grid_id).in_(sorted(grid_ids)))
    rows: list[Any] = list(session.execute(stmt))
    return {(str(r[0]), int(r[1])): int(r[2]) for r in rows}


def building_cases(*, session: Session, estate: str, building: int, grid_ids: Collection[str] | None = None,
                   limit: int = 100) -> list[Case]:
    """The cases reported from one building, newest first."""
    stmt = (select(Case).join(Resident, col(Resident.id) == col(Case.resident_id))
            .where(col(Resident.estate) == estate, col(Resident.building) == building)
            .order_by(col(Case.created_at).desc(), col(Case.id).desc()).limit(limit))
    if grid_ids is not None:
        stmt = stmt.where(col(Case.grid_id).in_(sorted(grid_ids)))
    return list(session.execute(stmt).scalars())


@dataclass(frozen=True)
class HotspotCases:
    hotspot: Hotspot
    cases: list[Case]
    buildings: list[Building]  # where its reporters live, sorted
    reporters: frozenset[int]  # resident ids of its reports


def hotspot_cases(*, session: Session, hotspots: Sequence[Hotspot]) -> list[HotspotCases]:
    """Each hotspot with its cases (in report order), the buildings they came from and their reporters."""
    codes = sorted({c for h in hotspots for c in h.case_codes})
    by_code: dict[str, Case] = {}
    homes: dict[int, Building] = {}
    for start in range(0, len(codes), 500):
        rows: list[Any] = list(session.execute(select(Case, col(Resident.estate), col(Resident.building))
                               .outerjoin(Resident, col(Resident.id) == col(Case.resident_id))
                               .where(col(Case.code).in_(codes[start:start + 500]))).all())
        for case, estate, number in rows:
            by_code[case.code] = case
            if case.resident_id is not None and estate and number:
                homes[case.resident_id] = (estate, number)
    out: list[HotspotCases] = []
    for hotspot in hotspots:
        cases = [by_code[c] for c in hotspot.case_codes if c in by_code]
        reporters = frozenset(c.resident_id for c in cases if c.resident_id is not None)
        buildings = sorted({homes[r] for r in reporters if r in homes})
        out.append(HotspotCases(hotspot, cases, buildings, reporters))
    return out


def list_hotspots(*, session: Session, scopes: Collection[str] | None = None, limit: int = 50) -> list[Hotspot]:
    """The latest hotspots ("grid:FU01" / "community:furong" scopes, when given), newest first."""
    stmt = select(Hotspot).order_by(col(Hotspot.opened_at).desc(), col(Hotspot.id).desc()).limit(limit)
    if scopes is not None:
        stmt = stmt.where(col(Hotspot.scope).in_(sorted(scopes)))
    return list(session.execute(stmt).scalars())
