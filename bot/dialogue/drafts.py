"""The typed memory of a conversation: what is being filled in, slot by slot (Rasa's forms, as pydantic models).

Owns: `ReportDraft` (a resident's report being put together), `WorkerTask` (a worker's multi-step action),
`AddressPick` (the community/estate/building buttons so far), `LastQuestion` (the answer the 有用/没用/转人工,
详细 and clarification buttons refer to) and `DialogueData`, which is what the Conversation row's JSON holds.
Unknown keys in a stored row are dropped and missing ones take their defaults, so a conversation saved by an
older version still loads.
Must not: decide what to ask next (report.py and worker.py do) or touch the database.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=False)


class ReportItem(_Data):
    """One problem of a report: it becomes one case."""

    intent: str
    category: str
    urgency: str
    text: str  # masked
    # whom a complaint is about (Understanding.target): "staff" routes above the grid; None: not yet read
    target: str | None = None
    target_roles: list[str] = Field(default_factory=list)


class Place(_Data):
    """Where a problem is: the words to show, and the parsed parts that find the grid."""

    where: str | None = None
    estate: str | None = None
    building: int | None = None
    unit: int | None = None


class ReportDraft(Place):
    """A report being filled in. Slots: what (items), where, photo; each asked at most once."""

    items: list[ReportItem] = Field(default_factory=list)
    attachments: list[dict[str, Any]] = Field(default_factory=list)
    what_asked: bool = False
    where_asked: bool = False
    photo_asked: bool = False
    where_is_home: bool = False
    address_unconfirmed: bool = False  # opened although the place could not be read (地址待确认)

    def place(self) -> Place:
        return Place(where=self.where, estate=self.estate, building=self.building, unit=self.unit)

    def set_place(self, place: Place) -> None:
        self.where, self.estate, self.building, self.unit = place.where, place.estate, place.building, place.unit


class AddressPick(_Data):
    """The address buttons pressed so far, and how many typed addresses could not be read."""

    community: str | None = None
    estate: str | None = None
    building: int | None = None
    unit: int | None = None  # typed with an estate name still to be confirmed
    suggested: str | None = None  # the estate a typed name only looked like: asked "您说的是…吗？", not yet bound
    failures: int = 0


class SourceRef(_Data):
    """A document an answer cited or a clarification offered, as the review queue keeps it."""

    doc_id: str = ""
    title: str = ""
    section: str = ""
    score: float | None = None

    def label(self) -> str:
        """"标题 › 小节", or the title alone (as knowledge.types.Citation.label)."""
        return f"{self.title} › {self.section}" if self.section and self.section != self.title else self.title


class LastQuestion(_Data):
    """The question the last answer's buttons refer to: 有用/没用/转人工, 详细, or a clarification's picks."""

    id: int
    text: str  # masked
    category: str = "other"
    answered: bool = False
    rated: bool = False
    case: str | None = None  # the 转人工 case it became
    mode: str = ""  # the answer's mode (faq, offline, llm, clarify…), for the review queue
    sources: list[SourceRef] = Field(default_factory=list)  # what the answer cited (or, unanswered, retrieved)
    more: str = ""  # the rest of a long answer with its sources line, sent on 「详细」
    more_shown: bool = False
    candidates: list[SourceRef] = Field(default_factory=list)  # a clarification's offered documents, in order
    picked: bool = False  # a candidate (or 都不是) was chosen: the pick buttons are spent


WorkerAction = Literal["respond", "resolve", "transfer", "extend", "relay", "ask_phone"]  # relay: words to the resident


class WorkerTask(_Data):
    """A worker's action that needs more than one tap: which case, which action, what was chosen so far."""

    action: WorkerAction
    case: str
    step: Literal["note", "to", "reason", "hours", "photo"] = "note"
    to_role: str | None = None
    hours: int | None = None
    note: str | None = None


class HeardVoice(_Data):
    """A voice message: its text read back and waiting for 对 / 不对, or (no text) kept until consent."""

    text: str = ""  # masked transcript; "" = kept to go to the grid worker as 语音留言
    file_id: str = ""
    duration: int = 0
    back_to: str = "idle"  # the state the message came in, where its text is handled on 对


class DialogueData(_Data):
    """Everything a conversation remembers between messages."""

    draft: ReportDraft | None = None
    task: WorkerTask | None = None
    addr: AddressPick | None = None
    clarify: str | None = None  # the masked text waiting for the 咨询/报修 choice
    pending: str | None = None  # a masked message to carry on with after consent and address
    pending_attachments: list[dict[str, Any]] = Field(default_factory=list)
    unbound_where: str | None = None  # an address that could not be read twice: the kept problem's place
    consent_declined: bool = False
    last_q: LastQuestion | None = None
    qseq: int = 0
    review_open: bool = False  # a miss went to the review queue: the resident's next message is kept with it
    recent: list[str] = Field(default_factory=list)  # the resident's last few messages (masked), for a 转人工 case
    emergency_case: str | None = None  # an emergency opened without a place: the next address or location joins it
    emergency_near: str | None = None  # the relative place it named ("厨房", "楼道"), joined to the address given
    privacy_due: bool = False  # an emergency was served first: the privacy notice is asked on the next turn
    note_pending: str | None = None  # a masked message waiting for 补充到工单 / 新问题
    wish_note: str | None = None  # the 微心愿 (its case code) whose progress note is awaited (bot.dialogue.wishes)
    voice: HeardVoice | None = None  # a voice message read back or kept (bot.dialogue.voice)

    @classmethod
    def load(cls, raw: dict[str, Any] | None) -> DialogueData:
        """The stored JSON as typed data; a part that no longer validates is dropped, never the whole."""
        raw = dict(raw or {})
        if isinstance(raw.get("clarify"), dict):  # older rows kept {"text": ...}
            raw["clarify"] = raw["clarify"].get("text")
        if isinstance(raw.get("addr"), dict):  # older rows kept {"c": ..., "e": ..., "b": ...}
            old = raw["addr"]
            raw["addr"] = {"community": old.get("community", old.get("c")), "estate": old.get("estate", old.get("e")),
                           "building": old.get("building", old.get("b")), "failures": old.get("failures", 0),
                           "unit": old.get("unit"), "suggested": old.get("suggested")}
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            broken = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
            return cls.model_validate({k: v for k, v in raw.items() if k not in broken})

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)
