"""Identity: channel accounts (channel, external_id) and the people behind them, and where a push goes.

Owns: finding or creating the resident of an account, linking an account to a worker (with its audit
event), touching `last_seen_at`, and `address_of`, the one rule for which account a push to a person uses
(the account they used last). Must not: know any channel's API; ids are plain text here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from casestore.audit import record_audit
from casestore.models import Account, Resident, Worker


@dataclass(frozen=True)
class Address:
    """Where a message to a person goes: a channel and the chat on it."""

    channel: str
    chat_id: int


def _external(external_id: int | str) -> str:
    return str(external_id).strip()


def get_account(*, session: Session, channel: str, external_id: int | str) -> Account | None:
    stmt = select(Account).where(col(Account.channel) == channel, col(Account.external_id) == _external(external_id))
    return session.exec(stmt).first()


def get_worker_by_account(*, session: Session, channel: str, external_id: int | str) -> Worker | None:
    """The worker behind this account, active or not; None for a resident's or an unknown account."""
    account = get_account(session=session, channel=channel, external_id=external_id)
    if account is None or account.worker_id is None:
        return None
    return session.get(Worker, account.worker_id)


def find_worker_by_external_id(*, session: Session, external_id: int | str) -> Worker | None:
    """The worker holding an account with this id on any channel (the terminal plays "the worker 900100")."""
    stmt = (select(Account)
            .where(col(Account.external_id) == _external(external_id), col(Account.worker_id).is_not(None))
            .order_by(col(Account.id)))
    account = session.exec(stmt).first()
    return session.get(Worker, account.worker_id) if account is not None and account.worker_id else None


def get_resident_by_account(*, session: Session, channel: str, external_id: int | str) -> Resident | None:
    account = get_account(session=session, channel=channel, external_id=external_id)
    if account is None or account.resident_id is None:
        return None
    return session.get(Resident, account.resident_id)


def get_or_create_resident(*, session: Session, channel: str, external_id: int | str, now: datetime,
                           display_name: str = "") -> Resident:
    """The resident of this account, created (with the account) on first contact."""
    found = get_resident_by_account(session=session, channel=channel, external_id=external_id)
    if found is not None:
        return found
    resident = Resident(display_name=display_name, created_at=now)
    session.add(resident)
    session.flush()
    session.add(Account(channel=channel, external_id=_external(external_id), resident_id=resident.id,
                        created_at=now, last_seen_at=now))
    session.flush()
    return resident


def list_accounts(*, session: Session, resident_id: int | None = None, worker_id: int | None = None) -> list[Account]:
    stmt = select(Account)
    if resident_id is not None:
        stmt = stmt.where(col(Account.resident_id) == resident_id)
    if worker_id is not None:
        stmt = stmt.where(col(Account.worker_id) == worker_id)
    return list(session.exec(stmt.order_by(col(Account.id))))


def list_worker_external_ids(*, session: Session, channel: str) -> list[str]:
    """The external ids of every worker account on `channel` (for per-chat command menus)."""
    stmt = select(col(Account.external_id)).where(col(Account.channel) == channel, col(Account.worker_id).is_not(None))
    return sorted(session.exec(stmt))


def name_of_account(*, session: Session, channel: str | None, external_id: int | str) -> str | None:
    """A worker's position name, or "居民 #3", for the account with this id (any channel if None)."""
    stmt = select(Account).where(col(Account.external_id) == _external(external_id))
    if channel is not None:
        stmt = stmt.where(col(Account.channel) == channel)
    account = session.exec(stmt.order_by(col(Account.id))).first()
    if account is None:
        return None
    if account.worker_id is not None:
        worker = session.get(Worker, account.worker_id)
        return worker.name if worker is not None else None
    return f"居民 #{account.resident_id}"


def link_worker_account(*, session: Session, worker: Worker, channel: str, external_id: int | str, actor: str,
                        now: datetime) -> Account:
    """Make (channel, external_id) an account of `worker`, taking it from whoever held it; audited."""
    assert worker.id is not None
    account = get_account(session=session, channel=channel, external_id=external_id)
    before = None
    if account is None:
        account = Account(channel=channel, external_id=_external(external_id), worker_id=worker.id, created_at=now,
                          last_seen_at=now)
    else:
        if account.worker_id == worker.id:
            return account
        before = f"worker:{account.worker_id}" if account.worker_id else f"resident:{account.resident_id}"
        account.worker_id, account.resident_id, account.last_seen_at = worker.id, None, now
    session.add(account)
    session.flush()
    record_audit(session=session, actor=actor, action="link_account", subject=f"worker:{worker.id}", now=now,
                 data={"channel": channel, "account": account.id, "previous_holder": before})
    return account


def touch_account(*, session: Session, account: Account, now: datetime) -> None:
    """Remember that the person used this account now (their pushes follow them here)."""
    account.last_seen_at = now
    session.add(account)


def _chat_id(account: Account) -> int | None:
    return int(account.external_id) if account.external_id.lstrip("-").isdigit() else None


def _address(accounts: list[Account]) -> Address | None:
    usable = [a for a in accounts if _chat_id(a) is not None]
    if not usable:
        return None
    # the account used last; a never-seen account (a worker from grids.yaml) ranks by age
    best = max(usable, key=lambda a: (a.last_seen_at is not None, a.last_seen_at or a.created_at, -(a.id or 0)))
    chat_id = _chat_id(best)
    assert chat_id is not None
    return Address(best.channel, chat_id)


def address_of(*, session: Session, recipient: str) -> Address | None:
    """Where a push to "worker:7" or "resident:3" goes (the account they used last), or to a raw chat
    "chat:telegram:12345"; None if the recipient has no reachable account."""
    kind, _, ident = recipient.partition(":")
    if kind == "chat":
        channel, _, chat = ident.partition(":")
        return Address(channel, int(chat)) if channel and chat.lstrip("-").isdigit() else None
    if not ident.isdigit() or kind not in ("worker", "resident"):
        return None
    column = Account.worker_id if kind == "worker" else Account.resident_id
    return _address(list(session.exec(select(Account).where(col(column) == int(ident)))))


def worker_addresses(*, session: Session) -> dict[int, Address]:
    """Every worker's push address at once (the sweep reads them per batch, not per case)."""
    by_worker: dict[int, list[Account]] = {}
    for account in session.exec(select(Account).where(col(Account.worker_id).is_not(None))):
        assert account.worker_id is not None
        by_worker.setdefault(account.worker_id, []).append(account)
    out: dict[int, Address] = {}
    for worker_id, accounts in by_worker.items():
        address = _address(accounts)
        if address is not None:
            out[worker_id] = address
    return out


def resident_addresses(*, session: Session, resident_ids: list[int]) -> dict[int, Address]:
    """The push address of each of `resident_ids` that has one, in one query per 500 ids (a notice's recipients)."""
    by_resident: dict[int, list[Account]] = {}
    # plain rows, not ORM objects: a notice to 5,000 residents spent most of its 2 s building Account instances
    columns = (col(Account.id), col(Account.channel), col(Account.external_id), col(Account.resident_id),
               col(Account.last_seen_at), col(Account.created_at))
    for start in range(0, len(resident_ids), 500):
        chunk = resident_ids[start:start + 500]
        for account in session.execute(sa_select(*columns).where(col(Account.resident_id).in_(chunk))):
            assert account.resident_id is not None
            by_resident.setdefault(account.resident_id, []).append(account)  # type: ignore[arg-type]  # same fields
    out: dict[int, Address] = {}
    for resident_id, accounts in by_resident.items():
        address = _address(accounts)
        if address is not None:
            out[resident_id] = address
    return out
