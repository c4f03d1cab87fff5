"""All SQLModel classes of the case store, in one module.

Families: `*Base` holds shared fields, `*Create` is what a service hands in, and the `table=True` class holds
raw data. Raw personal data lives only on table models; what is shown or sent is rendered from masked fields.
Identity: a person (a `Resident` or a `Worker`) holds one or more channel `Account`s, each unique on
(channel, external_id): Telegram user 555001 and terminal user 555001 are two accounts, two people.
Must not: import Telegram, OpenAI or Chroma.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, UniqueConstraint, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always reads back an aware UTC datetime (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the case store; use aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class CaseStatus(StrEnum):
    new = "new"
    assigned = "assigned"
    accepted = "accepted"
    in_progress = "in_progress"
    resolved = "resolved"
    closed = "closed"
    reopened = "reopened"


OPEN_STATUSES = (
    CaseStatus.new,
    CaseStatus.assigned,
    CaseStatus.accepted,
    CaseStatus.in_progress,
    CaseStatus.reopened,
)


class CloseReason(StrEnum):
    rated = "rated"
    auto_closed_without_rating = "auto_closed_without_rating"
    duplicate = "duplicate"
    withdrawn = "withdrawn"


# ---------------- organisation ----------------
class Grid(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=12)
    name: str
    community_id: str = Field(index=True)
    community_name: str
    street_id: str


class WorkerBase(SQLModel):
    name: str
    role: str = Field(index=True)
    grid_id: str | None = Field(default=None, foreign_key="grid.id", index=True)
    community_id: str | None = Field(default=None, index=True)
    active: bool = True
    on_leave: bool = False
    is_deputy: bool = False
    is_lead: bool = False


class Worker(WorkerBase, table=True):
    id: int | None = Field(default=None, primary_key=True)


# ---------------- residents ----------------
class ResidentBase(SQLModel):
    display_name: str = ""
    community_id: str | None = None
    estate: str | None = None
    building: int | None = None
    unit: int | None = None
    grid_id: str | None = Field(default=None, foreign_key="grid.id", index=True)
    contact_masked: str | None = None


class Resident(ResidentBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    contact_phone: str | None = None  # raw; only the owner and the assignee's task push see it, masked
    consent_at: datetime | None = _ts()
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    # notice topics (casestore.broadcasts.TOPICS keys) the resident asked not to receive; "all" is every topic
    notice_opt_out: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))


class Account(SQLModel, table=True):
    """One channel account of one person: (channel, external_id) -> a resident or a worker.

    `external_id` is the channel's own id as text (a Telegram user id, a WeChat OpenID). `last_seen_at`
    picks the account a push goes to when a person holds several.
    """

    __table_args__ = (UniqueConstraint("channel", "external_id", name="uq_account_channel_external"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    external_id: str = Field(max_length=64)
    resident_id: int | None = Field(default=None, foreign_key="resident.id", index=True)
    worker_id: int | None = Field(default=None, foreign_key="worker.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    last_seen_at: datetime | None = _ts()


# ---------------- cases ----------------
class CaseBase(SQLModel):
    intent: str
    category: str = Field(index=True)
    urgency: str
    title: str = Field(max_length=200)
    description: str = Field(max_length=4000)  # masked text, safe to show to a worker
    location_text: str | None = Field(default=None, max_length=300)


class CaseCreate(CaseBase):
    resident_id: int | None = None
    grid_id: str | None = None
    attachments: list[dict[str, Any]] = Field(default_factory=list)


class Case(CaseBase, table=True):
    __table_args__ = (
        Index("ix_case_open_reminder", "next_reminder_at", postgresql_where=text("next_reminder_at IS NOT NULL"),
              sqlite_where=text("next_reminder_at IS NOT NULL")),
        Index("ix_case_grid_status", "grid_id", "status"),
        Index("ix_case_resident_created", "resident_id", "created_at"),
        Index("ix_case_grid_category_created", "grid_id", "category", "created_at"),
        Index("ix_case_created", "created_at"),  # the overview's today / this week read only their days
    )

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=20)
    resident_id: int | None = Field(default=None, foreign_key="resident.id")
    grid_id: str | None = Field(default=None, foreign_key="grid.id")
    community_id: str | None = None
    assignee_id: int | None = Field(default=None, foreign_key="worker.id", index=True)
    assignee_role: str | None = None
    cc_roles: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    # whom a complaint is about ("staff": the community's own people) and the positions it names: routing keeps
    # such a case away from the grid's workers and those positions, at intake and on every later transfer
    complaint_target: str | None = Field(default=None, max_length=10)
    complaint_roles: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    status: str = Field(default=CaseStatus.new, index=True)
    needs_address_confirmation: bool = False
    attachments: list[dict[str, Any]] = Field(default_factory=list,
                                              sa_column=Column(JSON, nullable=False, default=list))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    clock_started_at: datetime | None = _ts()
    response_due_at: datetime | None = _ts()
    resolve_due_at: datetime | None = _ts()
    first_response_at: datetime | None = _ts()
    resolved_at: datetime | None = _ts()
    closed_at: datetime | None = _ts()
    close_reason: str | None = None
    escalation_level: int = 0
    next_reminder_at: datetime | None = _ts()
    satisfaction: int | None = None
    reopen_count: int = 0
    clock_cycle: int = 0  # +1 whenever the clock restarts (transfer, reopen): keys that cycle's reminders
    duplicate_of_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    cluster_id: int | None = Field(default=None, foreign_key="hotspot.id", index=True)
    version: int = 1


class CaseCounter(SQLModel, table=True):
    """Per-day sequence for human-readable case codes (JN20261122-0042)."""

    day: str = Field(primary_key=True, max_length=8)
    value: int = 0


def _total() -> Any:
    """One kept sum of case_totals: a BIGINT that starts at 0."""
    return Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class CaseTotal(SQLModel, table=True):
    """The all-time sums of the case figures' clock-free parts, per grid ('' for none) and shard, kept by triggers
    on "case" (migration 0013) in every writer's transaction; `casestore.stats` sums them. Never written here."""

    __tablename__ = "case_totals"

    grid_key: str = Field(primary_key=True)
    shard: int = Field(primary_key=True)
    cases: int = _total()
    duplicates: int = _total()
    resp_done: int = _total()
    resp_ok: int = _total()
    res_done: int = _total()
    res_ok: int = _total()
    open: int = _total()
    resolved: int = _total()
    resolved_ever: int = _total()
    reopened: int = _total()
    answered: int = _total()
    auto_closed: int = _total()
    responded: int = _total()


class CaseEvent(SQLModel, table=True):
    """Append-only audit trail: who did what to which case, when."""

    __table_args__ = (Index("ix_caseevent_case_at", "case_id", "at"), Index("ix_caseevent_action_at", "action", "at"))
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id")
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    actor: str = Field(max_length=64)  # "resident:3", "worker:7", "system", "admin:123"
    action: str = Field(max_length=40)
    from_status: str | None = None
    to_status: str | None = None
    note: str | None = Field(default=None, max_length=2000)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))


class AuditEvent(SQLModel, table=True):
    """Append-only audit trail of changes that are not a case's: accounts, contact phones, staff, feedback."""

    __table_args__ = (Index("ix_auditevent_subject", "subject", "at"), Index("ix_auditevent_action_at", "action", "at"))
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    actor: str = Field(max_length=64)  # "resident:3", "worker:7", "admin:telegram:123", "system"
    action: str = Field(max_length=40)  # "register_worker", "change_contact", "answer_feedback", ...
    subject: str = Field(max_length=64)  # "worker:7", "resident:3"
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))


class Subscription(SQLModel, table=True):
    """Residents who reported a duplicate follow the original case's updates."""

    __table_args__ = (UniqueConstraint("case_id", "resident_id"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    resident_id: int = Field(foreign_key="resident.id")


class Hotspot(SQLModel, table=True):
    """N reports of one category in one grid or community within a window: one incident."""

    id: int | None = Field(default=None, primary_key=True)
    scope: str  # "grid:FU01" or "community:furong"
    category: str
    opened_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    report_count: int = 0
    last_report_at: datetime | None = _ts()
    case_codes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))


# ---------------- notifications and inbox ----------------
class NotificationState(StrEnum):
    pending = "pending"
    sending = "sending"  # claimed by a dispatcher; next_attempt_at is the lease expiry
    sent = "sent"
    failed = "failed"


class Notification(SQLModel, table=True):
    """An outgoing push, recorded before it is sent so that each goes out exactly once.

    Unique on (case, kind, level, recipient): a reminder or escalation is recorded once per recipient.
    """

    __table_args__ = (
        UniqueConstraint("case_id", "kind", "level", "recipient", name="uq_notification_once"),
        Index("ix_notification_pending", "state", "next_attempt_at"),
        # a NULL case_id never conflicts in uq_notification_once: pushes of no case (notices) are unique here
        Index("uq_notification_nocase_once", "kind", "level", "recipient", unique=True,
              postgresql_where=text("case_id IS NULL"), sqlite_where=text("case_id IS NULL")),
    )
    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="case.id")
    kind: str = Field(max_length=40)
    level: int = 0
    recipient: str = Field(max_length=64)  # "worker:7", "resident:3", "chat:12345"
    channel: str = Field(default="telegram", max_length=20)  # which channel's dispatcher delivers it
    chat_id: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    state: str = Field(default=NotificationState.pending)
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    next_attempt_at: datetime | None = _ts()
    sent_at: datetime | None = _ts()
    last_error: str | None = None


class Notice(SQLModel, table=True):
    """A staff notice (停水、停电、电梯维保、疫苗接种…) to the residents of some buildings, an estate, a grid or a
    community. Unique on `key` (the form's or the command's idempotency key): a repeated click or a resumed run
    finds this row and queues nothing twice; its deliveries are Notification rows (kind "notice", level = id)."""

    __table_args__ = (UniqueConstraint("key", name="uq_notice_key"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64)
    topic: str = Field(max_length=20)  # casestore.broadcasts.TOPICS key
    text: str = Field(max_length=1000)  # masked
    target: str = Field(max_length=200)  # "buildings:芙蓉小区:3,芙蓉小区:4", "estate:芙蓉小区", "grid:FU01", ...
    hotspot_id: int | None = Field(default=None, foreign_key="hotspot.id")
    recipients: int = 0  # Notification rows queued
    opted_out: int = 0  # residents of the target left out by their opt-out
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class WishStatus(StrEnum):
    open = "open"  # on the wall, nobody has claimed it
    claimed = "claimed"  # one volunteer or party member holds it
    done = "done"  # the claimer says it came true: waiting for the resident's 心愿达成
    fulfilled = "fulfilled"  # the resident confirmed it
    withdrawn = "withdrawn"  # its case was closed some other way


class Wish(SQLModel, table=True):
    """A 微心愿 on the wall: one per wish case. `text` is the public, masked wording the volunteers see (no name,
    room or number); `claimed_by` is set once, by a conditional UPDATE (casestore.wishes.claim_wish). Deadlines
    are columns: `due_at` (即接即办 and one-off wishes), `next_checkin_at` (结对帮扶), `alerted_at` (the lead was
    told nobody claimed it)."""

    __table_args__ = (UniqueConstraint("case_id", name="uq_wish_case"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id")
    resident_id: int | None = Field(default=None, foreign_key="resident.id")
    grid_id: str | None = Field(default=None, foreign_key="grid.id", index=True)
    community_id: str | None = Field(default=None, max_length=20, index=True)
    kind: str = Field(max_length=10)  # urgent (即接即办) | regular | pairing (结对帮扶)
    status: str = Field(default=WishStatus.open, max_length=10, index=True)
    category: str = Field(max_length=30)
    text: str = Field(max_length=300)  # masked, public
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    due_at: datetime | None = _ts(index=True)
    claimed_by: int | None = Field(default=None, foreign_key="worker.id", index=True)
    claimed_at: datetime | None = _ts()
    done_at: datetime | None = _ts()
    fulfilled_at: datetime | None = _ts()
    next_checkin_at: datetime | None = _ts(index=True)
    checkins: int = 0
    progress_notes: int = 0
    alerted_at: datetime | None = _ts()


class InboundState(StrEnum):
    received = "received"
    done = "done"
    failed = "failed"


class InboundUpdate(SQLModel, table=True):
    """Every incoming channel update, stored before it is handled (unique per channel and update id).

    `payload` holds the update with its text masked (never raw phone or ID numbers) while it waits to be handled,
    and nothing once it is done. `attempts` counts handler starts, `failures` the starts whose handler raised: a
    start that neither finished nor failed was cut off by a stopped process (bot.channels.inbox explains the rules).
    """

    __table_args__ = (UniqueConstraint("channel", "update_id", name="uq_inbound_update"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    update_id: int = Field(sa_column=Column(BigInteger(), nullable=False))
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    state: str = Field(default=InboundState.received, index=True)
    attempts: int = 0
    failures: int = 0
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    handled_at: datetime | None = _ts()
    error: str | None = None  # masked
    erased_at: datetime | None = _ts(index=True)  # the update's content removed (retention); the key stays


class OutboundReply(SQLModel, table=True):
    """One message of the reply to one inbound update: the reply outbox.

    Written in the transaction that marks the update handled, so a handled update always has its reply and an
    unhandled one has none; a sender delivers the rows of each chat in id order (casestore.dispatch). Unique on
    (channel, update id, position): a reply is recorded once. `payload` is emptied once the message is sent.
    """

    __table_args__ = (
        UniqueConstraint("channel", "update_id", "position", name="uq_outbound_reply"),
        Index("ix_outboundreply_open", "channel", "state", "chat_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    update_id: int = Field(sa_column=Column(BigInteger(), nullable=False))
    position: int = 0  # order within the reply; notices about the update itself sit at 1000 and up
    chat_id: int = Field(sa_column=Column(BigInteger(), nullable=False))
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    state: str = Field(default=NotificationState.pending)
    attempts: int = 0
    parts_sent: int = 0  # Bot API sends of this message already accepted (a long text is split into several)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    next_attempt_at: datetime | None = _ts()  # when pending: not before; when sending: the lease expiry
    sent_at: datetime | None = _ts()
    last_error: str | None = None


class Conversation(SQLModel, table=True):
    """Per-user dialogue state, persisted so that a restart resumes mid-conversation."""

    __table_args__ = (UniqueConstraint("channel", "user_id", name="uq_conversation_user"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    user_id: int = Field(sa_column=Column(BigInteger(), nullable=False))
    state: str = "start"
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class Feedback(SQLModel, table=True):
    """Answer ratings (有用/没用) and other resident feedback on knowledge answers."""

    id: int | None = Field(default=None, primary_key=True)
    resident_id: int | None = Field(default=None, foreign_key="resident.id")
    question: str = Field(max_length=500)
    useful: bool
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


# ---------------- review queue ----------------
class ReviewKind(StrEnum):
    """Why a knowledge answer went into the review queue."""

    not_found = "not_found"  # the knowledge base had no answer
    not_useful = "not_useful"  # the resident pressed 没用
    handoff_after_answer = "handoff_after_answer"  # asked for a person right after an answer
    clarify_unpicked = "clarify_unpicked"  # offered candidates, none was picked


class ReviewStatus(StrEnum):
    open = "open"
    resolved = "resolved"
    dismissed = "dismissed"


class ReviewResolution(StrEnum):
    faq = "faq"  # a curated answer was added
    scope = "scope"  # a scope example was added
    lexicon = "lexicon"  # an everyday word was mapped to the documents' term


class ReviewItemBase(SQLModel):
    """A missed question as an admin reviews it: every text field is masked, never raw."""

    kind: str = Field(max_length=30)
    question: str = Field(max_length=500)  # masked
    retrieved: list[dict[str, Any]] = Field(default_factory=list,  # [{doc_id, title, section, score}]
                                            sa_column=Column(JSON, nullable=False, default=list))
    answer_mode: str = Field(default="", max_length=30)
    resident_id: int | None = Field(default=None, foreign_key="resident.id")
    next_message: str | None = Field(default=None, max_length=500)  # masked: what the resident said next
    status: str = Field(default=ReviewStatus.open, max_length=20)
    resolution: str | None = Field(default=None, max_length=20)
    resolved_doc: str | None = Field(default=None, max_length=200)  # the right document's slug
    resolved_by: str | None = Field(default=None, max_length=64)


class ReviewItem(ReviewItemBase, table=True):
    __table_args__ = (
        Index("ix_reviewitem_status_created", "status", "created_at"),
        Index("ix_reviewitem_resident_created", "resident_id", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    resolved_at: datetime | None = _ts()


# ---------------- the console (bot/web): staff accounts, sessions, API tokens, background jobs ----------------
class AdminScopeKind(StrEnum):
    street = "street"  # the street command centre: every community
    community = "community"  # one community's staff
    grid = "grid"  # one grid's leader


class AdminUserBase(SQLModel):
    username: str = Field(max_length=64)
    display_name: str = Field(default="", max_length=64)
    scope_kind: str = Field(default=AdminScopeKind.street, max_length=20)
    scope_id: str | None = Field(default=None, max_length=20)  # a community id or a grid id; None for the street
    active: bool = True


class AdminUser(AdminUserBase, table=True):
    """A console account. The password is stored only as an argon2 hash."""

    __tablename__ = "admin_user"
    __table_args__ = (UniqueConstraint("username", name="uq_admin_user_username"),)
    id: int | None = Field(default=None, primary_key=True)
    password_hash: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class ConsoleSession(SQLModel, table=True):
    """A signed-in browser: the cookie carries a signed random token, the table its SHA-256 and its CSRF token,
    so any console replica can verify it."""

    __tablename__ = "console_session"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_console_session_token"),)
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64)
    admin_id: int = Field(foreign_key="admin_user.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ended_at: datetime | None = _ts()


class ApiToken(SQLModel, table=True):
    """A bearer token for other city systems (12345, 一网统管) reading /api/; only its SHA-256 is stored."""

    __tablename__ = "api_token"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_api_token_hash"),)
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64)
    admin_id: int = Field(foreign_key="admin_user.id", index=True)
    label: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    last_used_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()


class LoginAttempt(SQLModel, table=True):
    """One console login attempt, kept for the failed-login rate limit (per username and per address)."""

    __tablename__ = "login_attempt"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, index=True)
    address: str = Field(default="", max_length=64, index=True)
    ok: bool = False
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True))


class ConsoleKey(SQLModel, table=True):
    """The cookie-signing key when WEB_SECRET_KEY is not set: made once, shared by every replica."""

    __tablename__ = "console_key"
    id: int = Field(default=1, primary_key=True)
    key: str = Field(max_length=128)


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class Job(SQLModel, table=True):
    """A background job started from the console (ingestion, an eval run). Claimed from the table with
    FOR UPDATE SKIP LOCKED, so each runs once whatever the number of console replicas."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40, index=True)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    state: str = Field(default=JobState.queued, max_length=20, index=True)
    progress: float = 0.0  # 0..1
    message: str = Field(default="", max_length=500)  # Chinese, shown beside the progress bar
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    created_by: str = Field(max_length=64)
    claimed_by: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    started_at: datetime | None = _ts()
    heartbeat_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


class ChannelUser(SQLModel, table=True):
    """A WeChat / WeCom user behind a numeric alias: the dialogue, the inbox and the outboxes key people and chats
    by a 64-bit integer (Telegram's ids), WeChat names them by a string (OpenID, WeCom UserID). The alias is
    derived from (channel, user) by a hash (bot.channels.wechat_store), so every replica computes the same one
    without asking; this row maps it back for sending. `menu` holds the signed button tokens of the numbered
    choices last shown to the user ("回复 1 确认"), so a typed number becomes the same signed action as a press.
    `last_inbound_at` is when the user last wrote (the Official Account's 48-hour customer-service window)."""

    __tablename__ = "channel_user"
    __table_args__ = (UniqueConstraint("channel", "user_ref", name="uq_channel_user"),)
    alias: int = Field(sa_column=Column(BigInteger(), primary_key=True, autoincrement=False))
    channel: str = Field(max_length=20)
    user_ref: str = Field(max_length=128)  # the OpenID or UserID (an opaque id, not personal data)
    menu: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    menu_at: datetime | None = _ts()
    last_inbound_at: datetime | None = _ts()
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class ChannelToken(SQLModel, table=True):
    """A channel's API access token (WeChat's access_token lives 7200 s), shared by every replica: a replica
    that finds it stale refreshes it under a row lock, so one refresh serves all (bot.channels.wechat_store)."""

    __tablename__ = "channel_token"
    name: str = Field(primary_key=True, max_length=80)  # "wechat:<appid>", "wecom:<corpid>:<agentid>"
    token: str = Field(default="", max_length=1024)
    expires_at: datetime | None = _ts()
    refreshed_at: datetime | None = _ts()
    refreshes: int = 0
