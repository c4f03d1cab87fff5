"""Who handles a case: `routing.yaml` rules applied to the organisation in the database.

Owns: choosing the responsible role (first matching rule), finding the person who holds that role in the
case's grid or community, the fallback chain when that person is inactive or on leave (deputy, then the
community supervisor), and the duty desk for cases whose grid is unknown (an emergency copied to the street
command centre). A case the rules give the grid's full-time position is shared by the grid's team
(routing.yaml `team`, `share_in_team`): nobody on leave or inactive, nobody outside their working hours, and the
part-timer with the fewest open cases when the full-time worker holds more than `overflow_after`; when the team
is there but off duty the case goes to `after_hours` (the duty desk). A complaint about the community's
own people (`target="staff"`) never reaches the people it may be about: the grid's own workers (full-time,
part-time, deputy, volunteers) and the holders of the positions it names are skipped, and its fallback is the
street command centre, never the grid; nobody of the grid is copied either.
Must not: change cases or send anything (intake and actions do that with the `Assignment` it returns).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from casestore.models import Case, Grid, Resident, Worker
from casestore.staff import file_entries, open_loads
from policies.models import Policies, Routing, WorkingHours
from policies.taxonomy import ROUTING_TARGETS, Role

LOCAL_TZ = ZoneInfo("Asia/Shanghai")  # working hours are read in the city's time

# positions that live in a community rather than in one grid
COMMUNITY_ROLES = {Role.supervisor.value, Role.duty_desk.value, Role.mediator.value, Role.property_manager.value}


@dataclass(frozen=True)
class Assignment:
    worker: Worker
    role: str  # the position actually used ("full_time", "deputy", "supervisor", ...)
    wanted_role: str  # what the rule asked for
    reason: str  # for the audit trail: rule matched and any fallback taken
    cc: list[tuple[str, Worker]] = field(default_factory=list)


STAFF = "staff"
# positions inside a grid: whoever holds one is "the resident's own grid worker" for a staff complaint
GRID_ROLES = (Role.full_time.value, Role.part_time.value, Role.volunteer.value)
# routing targets inside a grid: never a target for a complaint about staff
STAFF_GRID_POSITIONS = frozenset(GRID_ROLES) | {"deputy", "volunteer_lead"}


def match_rule(routing: Routing, *, intent: str, category: str, urgency: str,
               target: str | None = None) -> tuple[str, list[str], str]:
    """The (role, cc roles, description) of the first rule matching the case; the default otherwise."""
    for i, rule in enumerate(routing.rules):
        m = rule.match
        if m.intent is not None and m.intent.value != intent:
            continue
        if m.target is not None and m.target != target:
            continue
        if m.category is not None and m.category.value != category:
            continue
        if m.urgency is not None and m.urgency.value != urgency:
            continue
        conds = ",".join(f"{k}={v}" for k, v in m.model_dump(exclude_none=True).items())
        return rule.role, list(rule.cc), f"rule#{i + 1}({conds})→{rule.role}"
    return routing.default.role, list(routing.default.cc), f"default→{routing.default.role}"


def is_available(worker: Worker) -> bool:
    return bool(worker.active) and not worker.on_leave


def community_of(*, session: Session, grid_id: str | None) -> str | None:
    if grid_id is None:
        return None
    grid = session.get(Grid, grid_id)
    return grid.community_id if grid else None


def find_holder(*, session: Session, role: str, grid_id: str | None, community_id: str | None) -> Worker | None:
    """The person holding `role` (a routing target) for this grid/community, available or not."""
    stmt = select(Worker)
    if role == "deputy":
        stmt = stmt.where(Worker.grid_id == grid_id, Worker.role == Role.part_time.value,
                          col(Worker.is_deputy).is_(True))
    elif role == "volunteer_lead":
        stmt = stmt.where(Worker.grid_id == grid_id, Worker.role == Role.volunteer.value, col(Worker.is_lead).is_(True))
    elif role == Role.street_command.value:
        stmt = stmt.where(Worker.role == role)
    elif role in COMMUNITY_ROLES:
        stmt = stmt.where(Worker.role == role, Worker.community_id == community_id)
    else:  # full_time, part_time, volunteer: positions inside the grid
        stmt = stmt.where(Worker.role == role, Worker.grid_id == grid_id)
    if grid_id is None and role not in COMMUNITY_ROLES and role != Role.street_command.value:
        return None
    return session.exec(stmt.order_by(col(Worker.id))).first()


def grid_worker_ids(*, session: Session, grid_ids: Iterable[str | None]) -> frozenset[int]:
    """Everyone holding a position inside these grids (active or not)."""
    ids = [g for g in grid_ids if g]
    if not ids:
        return frozenset()
    stmt = select(Worker.id).where(col(Worker.grid_id).in_(ids), col(Worker.role).in_(GRID_ROLES))
    return frozenset(w for w in session.exec(stmt) if w is not None)


def named_worker_ids(*, session: Session, roles: Iterable[str], grid_id: str | None,
                     community_id: str | None) -> frozenset[int]:
    """The holders of the positions a staff complaint names (网格长 → the community's supervisor)."""
    out: set[int] = set()
    for role in roles:
        if role not in ROUTING_TARGETS:  # "community": no one position, the grid's workers are skipped anyway
            continue
        holder = find_holder(session=session, role=role, grid_id=grid_id, community_id=community_id)
        if holder is not None and holder.id is not None:
            out.add(holder.id)
    return frozenset(out)


def kept_away(*, session: Session, case: Case) -> frozenset[int]:
    """Who must never get `case`: for a complaint about staff, everyone of its grid and of its resident's grid
    and the holders of the positions it names; nobody for any other case."""
    if case.complaint_target != STAFF:
        return frozenset()
    resident = session.get(Resident, case.resident_id) if case.resident_id is not None else None
    grids = [case.grid_id, resident.grid_id if resident is not None else None]
    return (grid_worker_ids(session=session, grid_ids=grids)
            | named_worker_ids(session=session, roles=case.complaint_roles or [], grid_id=case.grid_id,
                               community_id=case.community_id))


def hours_of(*, policies: Policies, worker: Worker) -> WorkingHours | None:
    """The person's working hours: their own in grids.yaml, else their position's in routing.yaml (None: any time)."""
    entry = file_entries(policies.grids).get((worker.name, worker.role, worker.grid_id))
    if entry is not None and entry.working_hours is not None:
        return entry.working_hours
    hours: WorkingHours | None = policies.routing.team.working_hours.get(worker.role)  # type: ignore[call-overload]
    return hours


def in_hours(*, policies: Policies, worker: Worker, now: datetime) -> bool:
    hours = hours_of(policies=policies, worker=worker)
    if hours is None:
        return True
    local = now.astimezone(LOCAL_TZ)
    return hours.covers(local.isoweekday(), local.time())


def team_of(*, session: Session, grid_id: str) -> tuple[Worker | None, list[Worker]]:
    """The grid's full-time worker and its part-timers (the deputy first), available or not."""
    full = find_holder(session=session, role=Role.full_time.value, grid_id=grid_id, community_id=None)
    parts = session.exec(select(Worker).where(col(Worker.grid_id) == grid_id,
                                              col(Worker.role) == Role.part_time.value)).all()
    return full, sorted(parts, key=lambda w: (not w.is_deputy, w.id or 0))


@dataclass(frozen=True)
class TeamPick:
    chosen: tuple[str, Worker] | None  # (position, person); None: nobody of the team can take it
    steps: list[str]  # what was skipped and why, for the audit trail
    off_duty: bool  # someone of the team is available but outside their hours (→ routing.yaml after_hours)


def _position(worker: Worker) -> str:
    if worker.role == Role.part_time.value:
        return "deputy" if worker.is_deputy else Role.part_time.value
    return worker.role


def _label(worker: Worker) -> str:
    """How the audit trail names a team member: the position, with the id where a grid has two (part_time#12)."""
    position = _position(worker)
    return f"{position}#{worker.id}" if position == Role.part_time.value else position


def share_in_team(*, session: Session, policies: Policies, grid_id: str, now: datetime | None,
                  exclude_worker_ids: frozenset[int] = frozenset()) -> TeamPick:
    """Who of the grid's team takes a case meant for its full-time position: the full-time worker while in
    hours and holding at most `overflow_after` open cases; otherwise the least loaded part-timer in hours (the
    deputy on a tie); the overloaded full-time worker when no part-timer can. `now` None: hours not checked."""
    team = policies.routing.team
    full, parts = team_of(session=session, grid_id=grid_id)
    loads = open_loads(session=session, worker_ids=[w.id for w in [full, *parts] if w is not None and w.id])
    steps: list[str] = []
    off_duty = False

    def usable(worker: Worker) -> bool:
        nonlocal off_duty
        label = _label(worker)
        if worker.id in exclude_worker_ids:
            steps.append(f"{label} excluded")
        elif not is_available(worker):
            steps.append(f"{label} {'on leave' if worker.on_leave else 'inactive'}")
        elif now is not None and not in_hours(policies=policies, worker=worker, now=now):
            steps.append(f"{label} off duty")
            off_duty = True
        else:
            return True
        return False

    if full is None:
        steps.append("no full_time")
    full_ok = full is not None and usable(full)
    if full is not None and full_ok:
        held = loads.get(full.id or 0, 0)
        if held <= team.overflow_after:
            return TeamPick((Role.full_time.value, full), steps, off_duty)
        steps.append(f"full_time holds {held} open (> {team.overflow_after})")
    ready = [w for w in parts if usable(w)]
    if ready:
        best = min(ready, key=lambda w: (loads.get(w.id or 0, 0), not w.is_deputy, w.id or 0))
        steps.append(f"{_label(best)} holds {loads.get(best.id or 0, 0)} open")
        return TeamPick((_position(best), best), steps, off_duty)
    if full is not None and full_ok:  # overloaded, but nobody to share with: the full-time worker keeps it
        return TeamPick((Role.full_time.value, full), [*steps, "no part-timer can share"], off_duty)
    return TeamPick(None, steps, off_duty)


def route(
    *,
    session: Session,
    policies: Policies,
    intent: str,
    category: str,
    urgency: str,
    grid_id: str | None,
    community_id: str | None,
    role: str | None = None,
    exclude_worker_ids: frozenset[int] = frozenset(),
    target: str | None = None,
    target_roles: Sequence[str] = (),
    now: datetime | None = None,
) -> Assignment:
    """Pick the person for a case. `role` overrides the rules (a transfer to a role); `target="staff"` keeps a
    complaint away from the grid's workers and the positions it names (`target_roles`); `now` makes the team
    respect working hours (None: hours are not checked)."""
    routing = policies.routing
    cc_roles: list[str]
    if community_id is None:
        community_id = community_of(session=session, grid_id=grid_id) or policies.grids.communities[0].id
    staff = target == STAFF and role is None
    if role is not None:
        wanted, cc_roles, reason = role, [], f"transfer→{role}"
    elif grid_id is None and not staff:
        # a danger with no place yet: the street command centre hears of it at once too (the community is a guess)
        cc_roles = [Role.street_command.value] if urgency == "emergency" else []
        wanted, reason = routing.unknown_grid, f"unknown grid→{routing.unknown_grid}"
    else:  # a staff complaint needs no grid: it goes above the grid
        wanted, cc_roles, reason = match_rule(routing, intent=intent, category=category, urgency=urgency,
                                              target=target)

    chain = [wanted] + [r for r in routing.fallback if r != wanted] + [Role.supervisor.value, Role.street_command.value]
    if staff:
        exclude_worker_ids = (exclude_worker_ids | grid_worker_ids(session=session, grid_ids=[grid_id])
                              | named_worker_ids(session=session, roles=target_roles, grid_id=grid_id,
                                                 community_id=community_id))
        # above the grid only: its own positions are never a fallback for a complaint about its people
        chain = [r for r in chain if r not in STAFF_GRID_POSITIONS]
        chain = [r for r in chain if r in (wanted, Role.street_command.value)] or [Role.street_command.value]
        if Role.street_command.value not in chain:
            chain.append(Role.street_command.value)
        reason += "; staff complaint: the grid's workers and the named positions skipped"
    steps: list[str] = []
    chosen: tuple[str, Worker] | None = None
    if wanted == Role.full_time.value and role is None and not staff and grid_id is not None:
        pick = share_in_team(session=session, policies=policies, grid_id=grid_id, now=now,
                             exclude_worker_ids=exclude_worker_ids)
        steps += pick.steps
        chosen = pick.chosen
        if chosen is None:  # the team tried already: off duty → the duty desk, else the chain above the grid
            above = [r for r in chain if r not in STAFF_GRID_POSITIONS]
            chain = [routing.team.after_hours, *above] if pick.off_duty else above
            if pick.off_duty:
                steps.append(f"team off duty→{routing.team.after_hours}")
    for position in dict.fromkeys(chain if chosen is None else ()):  # ordered, without repeats
        holder = find_holder(session=session, role=position, grid_id=grid_id, community_id=community_id)
        if holder is None:
            steps.append(f"no {position}")
            continue
        if holder.id in exclude_worker_ids:
            steps.append(f"{position} excluded")
            continue
        if not is_available(holder):
            steps.append(f"{position} {'on leave' if holder.on_leave else 'inactive'}")
            continue
        chosen = (position, holder)
        break
    if chosen is None:
        raise LookupError(f"nobody can take a case in grid {grid_id} / community {community_id}")
    if steps:
        reason += "; " + ", ".join(steps) + f"→{chosen[0]}"
    cc: list[tuple[str, Worker]] = []
    for cc_role in cc_roles:
        holder = find_holder(session=session, role=cc_role, grid_id=grid_id, community_id=community_id)
        if holder is not None and is_available(holder) and holder.id != chosen[1].id \
                and holder.id not in exclude_worker_ids:
            cc.append((cc_role, holder))
    return Assignment(worker=chosen[1], role=chosen[0], wanted_role=wanted, reason=reason, cc=cc)


def supervisor_for(*, session: Session, community_id: str | None) -> Worker | None:
    return find_holder(session=session, role=Role.supervisor.value, grid_id=None, community_id=community_id)


def street_command(*, session: Session) -> Worker | None:
    return find_holder(session=session, role=Role.street_command.value, grid_id=None, community_id=None)
