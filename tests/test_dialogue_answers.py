"""The resident-facing side of answers, driven through DialogueEngine.handle: a clarification's candidates and
the pick, 「详细」, the hand-off (one message path, at most one case), the review queue's misses, questions quanbot
answers from grids.yaml, and the mediation path.

The knowledge base is the seam: `FakeKnowledge` implements knowledge.types.Knowledge, replays set answers and
records every question it was sent. The classifier is the real one (its model is cached under var/test-cache).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.dialogue import texts
from bot.dialogue.drafts import DialogueData
from bot.dialogue.engine import DialogueEngine
from bot.dialogue.grid_facts import Fact, detect
from bot.dialogue.turn import ModelCalls, ModelNeeded
from bot.services import Services
from bot.settings import PROJECT_ROOT, Settings
from casestore.audit import list_audit
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.models import Case, ReviewItem
from casestore.questions import QUESTION_ACTION
from casestore.stats import overview
from knowledge.types import Answer, Citation
from policies.masking import contains_unmasked
from policies.models import Policies
from tests.factories import (
    AI_CACHE,
    FU01_FULL_TIME,
    FURONG_MEDIATOR,
    RESIDENT_ID,
    all_text,
    button,
    buttons_of,
    command,
    find_button,
    make_resident,
    press,
    resident_of,
    text,
    worker_of,
)

NO_ANSWER = Answer("抱歉，知识库里没有找到能回答这个问题的内容。您可以换个说法再问，或者回复“转人工”。", False,
                   "offline")
DIBAO = Citation(title="最低生活保障办理指南", section="申请条件", source="示例", doc_id="dibao", score=0.41)
HARDSHIP = Citation(title="特困人员救助供养", section="申请条件", source="示例", doc_id="hardship-aid", score=0.39)
CLARIFY = Answer("", False, "clarify", clarify=[DIBAO, HARDSHIP])
GRID_FACTS = PROJECT_ROOT / "evals" / "data" / "independent" / "grid_facts.jsonl"


class FakeKnowledge:
    """knowledge.types.Knowledge with set answers; records what it was asked."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.in_doc: dict[tuple[str, str], Answer] = {}
        self.asked: list[str] = []
        self.asked_in: list[tuple[str, str]] = []

    def ask(self, question: str) -> Answer:
        self.asked.append(question)
        return self.answers.get(question, NO_ANSWER)

    def ask_in(self, question: str, doc_id: str) -> Answer:
        self.asked_in.append((question, doc_id))
        return self.in_doc.get((question, doc_id), NO_ANSWER)


@pytest.fixture(scope="session")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from bot.understanding import load_classifier

    root = tmp_path_factory.mktemp("cls")
    return load_classifier(Settings(_env_file=None, database_url=f"sqlite:///{root / 'unused.db'}",  # type: ignore[call-arg]
                                    var_dir=AI_CACHE, chroma_dir=root / "chroma"))


@pytest.fixture
def kb() -> FakeKnowledge:
    return FakeKnowledge()


@pytest.fixture
def services(settings: Settings, engine: Engine, policies: Policies, clock: FakeClock, classifier: Any,
             kb: FakeKnowledge) -> Iterator[Services]:
    s = Services(settings, clock=clock, engine=engine, policies=policies, classifier=classifier, knowledge=kb)
    yield s


@pytest.fixture
def dlg(services: Services) -> DialogueEngine:
    return services.dialogue


def cases(engine: Engine) -> list[Case]:
    with session_scope(engine) as s:
        return list(s.execute(select(Case).order_by(Case.id)).scalars())


def reviews(engine: Engine) -> list[ReviewItem]:
    with session_scope(engine) as s:
        return list(s.execute(select(ReviewItem).order_by(ReviewItem.id)).scalars())


def resident_id(engine: Engine) -> int:
    with session_scope(engine) as s:
        r = resident_of(s, RESIDENT_ID)
        assert r is not None and r.id is not None
        return r.id


def question_of(dlg: DialogueEngine, kb: FakeKnowledge, message: str, answer: Answer) -> str:
    """Set `answer` for whatever the dialogue asks for `message` (its masked text), and return that question."""
    u = dlg.services.classifier.understand(message)
    kb.answers[u.text] = answer
    return u.text


# ---------------------------------------------------------------- clarification
def test_clarify_shows_one_button_per_candidate_and_a_pick_answers_from_that_document(dlg, engine, clock, policies,
                                                                                     kb):
    make_resident(engine, policies, clock=clock)
    q = question_of(dlg, kb, "低保和特困有啥区别 俺该申请哪个", CLARIFY)
    kb.in_doc[(q, "hardship-aid")] = Answer("特困人员：无劳动能力、无生活来源、无法定赡养人。\n来源：[1] 特困",
                                           True, "offline", citations=[HARDSHIP])
    r = dlg.handle(text("低保和特困有啥区别 俺该申请哪个"))
    assert [m.text for m in r.messages] == [texts.ASK_WHICH_DOC]
    assert [b.label for b in buttons_of(r)] == [DIBAO.label(), HARDSHIP.label(), texts.BTN_NONE_OF_THESE]
    pick = find_button(r, HARDSHIP.label())
    r = dlg.handle(press(pick))
    assert kb.asked_in == [(q, "hardship-aid")]
    said = all_text(r)
    assert "无劳动能力" in said and "来源：[1]《特困人员救助供养》申请条件" in said
    assert [b.label for b in buttons_of(r)] == [texts.BTN_USEFUL, texts.BTN_NOT_USEFUL, texts.BTN_HUMAN]
    assert all_text(dlg.handle(press(pick))) == texts.BUTTON_EXPIRED  # spent: a second pick asks nothing
    assert len(kb.asked_in) == 1
    assert cases(engine) == [] and reviews(engine) == []


def test_forged_or_stale_picks_get_the_expired_reply_and_ask_nothing(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock)
    question_of(dlg, kb, "低保和特困有啥区别 俺该申请哪个", CLARIFY)
    r = dlg.handle(text("低保和特困有啥区别 俺该申请哪个"))
    qid = find_button(r, DIBAO.label()).arg.split(".")[0]  # type: ignore[union-attr]
    for arg in (f"{qid}.2", f"{qid}.7", f"{qid}.-1", f"{qid}.dibao", f"{qid}.", "99.0", "", "x"):
        assert all_text(dlg.handle(button("pick", arg=arg))) == texts.BUTTON_EXPIRED, arg
    assert kb.asked_in == [] and cases(engine) == [] and reviews(engine) == []
    # a newer question makes the old buttons stale
    dlg.handle(text("居住证怎么办"))
    assert all_text(dlg.handle(press(find_button(r, DIBAO.label())))) == texts.BUTTON_EXPIRED
    assert kb.asked_in == []


def test_none_of_these_hands_off_once_and_queues_the_question_masked_with_the_next_message(dlg, engine, clock,
                                                                                         policies, kb):
    make_resident(engine, policies, clock=clock)
    message = "我电话13812345678，低保和特困有啥区别 俺该申请哪个"
    q = question_of(dlg, kb, message, CLARIFY)
    assert "13812345678" not in q
    r = dlg.handle(text(message))
    r = dlg.handle(press(find_button(r, texts.BTN_NONE_OF_THESE)))
    (case,) = cases(engine)
    assert case.intent == "inquiry" and case.code in all_text(r) and len(r.messages) == 1
    with session_scope(engine) as s:
        assert case.assignee_id == worker_of(s, FU01_FULL_TIME).id
    (item,) = reviews(engine)
    assert item.kind == "clarify_unpicked" and item.question == q and not contains_unmasked(item.question)
    assert [d["doc_id"] for d in item.retrieved] == ["dibao", "hardship-aid"]
    assert item.resident_id == resident_id(engine) and item.answer_mode == "clarify"
    dlg.handle(text("我问的是残疾人两项补贴，电话13812345678"))  # itself a question the knowledge base misses
    item = next(i for i in reviews(engine) if i.kind == "clarify_unpicked")
    assert item.next_message and "残疾人两项补贴" in item.next_message and not contains_unmasked(item.next_message)


def test_ask_in_is_deferred_and_replayed_like_ask(services, kb):
    calls = ModelCalls(services, defer=True)
    with pytest.raises(ModelNeeded) as need:
        calls.ask_in("低保怎么申请", "dibao")
    assert (need.value.kind, need.value.text, need.value.doc_id) == ("ask_in", "低保怎么申请", "dibao")
    calls.run(need.value)
    assert kb.asked_in == [("低保怎么申请", "dibao")]
    assert calls.ask_in("低保怎么申请", "dibao") is calls.answers_in[("低保怎么申请", "dibao")]
    assert kb.asked_in == [("低保怎么申请", "dibao")]  # kept for the replayed pass: not asked twice


def test_a_stored_last_question_of_the_old_shape_still_loads() -> None:
    data = DialogueData.load({"last_q": {"id": 3, "text": "居住证怎么办", "answered": True}, "qseq": 3})
    assert data.last_q is not None and data.last_q.candidates == [] and data.last_q.more == ""
    assert not data.review_open


# ---------------------------------------------------------------- 详细
def test_more_is_sent_only_when_asked_with_the_sources_line(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock)
    permit = Citation(title="居住证办理指南", section="所需材料", source="示例", doc_id="residence-permit", score=0.8)
    question_of(dlg, kb, "居住证怎么办", Answer("带身份证和住所证明，到派出所办。", True, "offline",
                                              citations=[permit], more="签注：每年一次，期满前30日内办理。"))
    r = dlg.handle(text("居住证怎么办"))
    said = all_text(r)
    assert "派出所" in said and "签注" not in said and "来源：[1]《居住证办理指南》所需材料" in said
    assert [b.label for b in buttons_of(r)] == [texts.BTN_MORE, texts.BTN_USEFUL, texts.BTN_NOT_USEFUL,
                                                 texts.BTN_HUMAN]
    more = dlg.handle(press(find_button(r, texts.BTN_MORE)))
    assert more.messages[0].text == "签注：每年一次，期满前30日内办理。\n来源：[1]《居住证办理指南》所需材料"
    assert all_text(dlg.handle(press(find_button(r, texts.BTN_MORE)))) == texts.MORE_EXPIRED
    assert all_text(dlg.handle(button("more", arg="99"))) == texts.BUTTON_EXPIRED


def test_no_more_button_without_more(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock)
    question_of(dlg, kb, "居住证怎么办", Answer("带身份证和住所证明。", True, "faq"))
    r = dlg.handle(text("居住证怎么办"))
    assert texts.BTN_MORE not in [b.label for b in buttons_of(r)]


# ---------------------------------------------------------------- unanswered: one path, at most one case
def test_an_unanswered_question_opens_one_case_and_says_so_in_one_message(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock)
    r = dlg.handle(text("医保卡丢了咋补办"))
    assert kb.asked  # the knowledge base was asked and had nothing
    (message,) = r.messages
    (case,) = cases(engine)
    assert case.code in message.text and "专职网格员" in message.text and "前响应" in message.text
    assert "回复“转人工”" not in message.text and not message.buttons
    (item,) = reviews(engine)
    assert (item.kind, item.question, item.resident_id) == ("not_found", "医保卡丢了咋补办", resident_id(engine))
    # asking for a person again does not open a second case
    assert "已经转给工作人员" in all_text(dlg.handle(text("转人工")))
    assert len(cases(engine)) == 1


def test_a_topic_other_offices_handle_says_where_to_go_and_opens_no_case(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock)
    kb.answers["公积金咋提取"] = Answer("住房公积金的事不归社区办……一般找济南住房公积金中心（热线 12329）。", False,
                                  "offline", elsewhere="住房公积金")
    r = dlg.handle(text("公积金咋提取"))
    (message,) = r.messages
    assert "12329" in message.text and texts.NOT_ANSWERED not in message.text
    assert [b.label for b in message.buttons[0]] == [texts.BTN_HUMAN]
    assert cases(engine) == []  # where to go is the answer; a person is one button away
    (item,) = reviews(engine)
    assert item.kind == "not_found"
    dlg.handle(press(find_button(r, texts.BTN_HUMAN)))
    assert len(cases(engine)) == 1


def test_without_consent_an_unanswered_question_offers_the_button_and_opens_nothing(dlg, engine, clock, policies,
                                                                                   kb):
    make_resident(engine, policies, clock=clock, consent=False, estate=None, building=None)
    dlg.handle(command("start"))  # the privacy notice stays open; questions are still answered
    r = dlg.handle(text("医保卡丢了咋补办"))
    unanswered = [m for m in r.messages if texts.NOT_ANSWERED in m.text]
    assert len(unanswered) == 1 and "回复“转人工”" not in unanswered[0].text
    assert [b.label for b in unanswered[0].buttons[0]] == [texts.BTN_HUMAN]
    assert cases(engine) == []
    (item,) = reviews(engine)
    assert item.kind == "not_found" and item.resident_id is None


def test_not_useful_and_a_handoff_after_an_answer_go_to_the_review_queue(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock)
    fee = Citation(title="物业服务收费", section="收费标准", source="示例", doc_id="property-fees", score=0.52)
    question_of(dlg, kb, "物业费一平米多少钱", Answer("按合同约定的标准收取。", True, "offline", citations=[fee]))
    r = dlg.handle(text("物业费一平米多少钱"))
    dlg.handle(press(find_button(r, texts.BTN_NOT_USEFUL)))
    r = dlg.handle(press(find_button(r, texts.BTN_HUMAN)))
    assert len(cases(engine)) == 1 and texts.HUMAN_OPENED.split("{")[0] in all_text(r)
    items = reviews(engine)
    assert [i.kind for i in items] == ["not_useful", "handoff_after_answer"]
    assert all(i.retrieved == [{"doc_id": "property-fees", "title": "物业服务收费", "section": "收费标准",
                                "score": 0.52}] for i in items)
    assert all(i.question == "物业费一平米多少钱" and i.answer_mode == "offline" for i in items)


# ---------------------------------------------------------------- what quanbot itself knows
def _fact_table() -> list[tuple[str, str]]:
    own = [("俺们网格员是谁", "grid_worker"), ("网格员电话多少", "grid_worker_phone"),
           ("社区在哪", "community_address"), ("居委会几点上班", "office_hours"), ("网格长是谁", "supervisor"),
           ("晚上有事找谁", "duty_desk"), ("片长叫啥", "grid_worker"), ("咋联系网格员", "grid_worker_phone"),
           ("居委会的电话多少", "community_address")]
    if GRID_FACTS.exists():  # written by another hand from the topic list: the independent table
        rows = [json.loads(line) for line in GRID_FACTS.read_text("utf-8").splitlines() if line.strip()]
        own += [(row["question"], row["fact"]) for row in rows]
    return own


# what each answer must say for a resident of 芙蓉小区3号楼 (芙蓉社区第一网格), from grids.yaml
EXPECTED = {
    "grid_worker": ["芙蓉社区第一网格", "专职网格员", "王芳（示例）"],
    "grid_worker_phone": ["专职网格员", "王芳（示例）", "0531-0000-1010"],
    "community_address": ["芙蓉社区居委会", "芙蓉社区党群服务中心一楼", "0531-0000-1100"],
    "office_hours": ["芙蓉社区居委会", "8:30-12:00"],
    "supervisor": ["网格长", "张书记（示例）", "0531-0000-1101"],
    "duty_desk": ["芙蓉社区值班台", "0531-0000-1199", "17:30"],
}


@pytest.mark.parametrize(("question", "fact"), _fact_table())
def test_grid_facts_are_answered_for_the_residents_own_grid_not_from_documents(dlg, engine, clock, policies, kb,
                                                                               question, fact):
    assert detect(question) == Fact(fact)
    make_resident(engine, policies, clock=clock)
    said = all_text(dlg.handle(text(question)))
    assert all(part in said for part in EXPECTED[fact]), said
    assert kb.asked == [] and cases(engine) == []


def test_a_report_that_also_asks_for_the_worker_is_a_report(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock)
    said = all_text(dlg.handle(text("楼道灯坏了，网格员电话多少")))
    # the report path: the report itself, or (the question dilutes the reading) the 咨询-or-报修 question first
    assert "王芳（示例）" not in said and ("照片" in said or "我帮您登记" in said or "报修" in said)


@pytest.mark.parametrize("question", ["居住证怎么办", "社区医院在哪", "网格员不接电话", "社区在哪办居住证",
                                      "居委会给开证明需要什么材料", "高龄补贴怎么领", "值班的人爱答不理",
                                      "值班的电话一直没人接 打了十几遍", "建议社区办个老年人智能手机培训班",
                                      "居住证能让社区代办吗 我电话13812345678", "这事是找网格员还是打12345 哪个快",
                                      "独居老人联系不上 社区能帮着开门看看吗",
                                      "俺们上班顾不上 社区有没有人能上门帮着打扫卫生"])
def test_other_questions_are_not_taken_for_grid_facts(question):
    assert detect(question) is None


def test_a_full_timer_on_leave_is_covered_by_the_deputy(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock, building=14)  # 芙蓉社区第三网格: its full-timer is on leave
    said = all_text(dlg.handle(text("俺们网格员是谁")))
    assert "芙蓉社区第三网格" in said and "不在岗" in said and "钱伟（示例）" in said and "0531-0000-1031" in said


def test_a_grid_without_a_phone_on_file_says_so(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock, estate="曲水亭小区", building=13)  # 曲水社区第七网格
    said = all_text(dlg.handle(text("网格员电话多少")))
    assert "朱琳（示例）" in said and texts.FACT_NO_PHONE in said and "0531-0000-2100" in said


def test_grid_facts_without_an_address_list_the_communities_and_answer_once_bound(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock, estate=None, building=None)
    r = dlg.handle(text("俺们网格员是谁"))
    said = all_text(r)
    assert texts.FACT_NO_ADDRESS in said and "芙蓉社区" in said and "曲水社区" in said and "0531-0000-2100" in said
    assert [b.label for b in buttons_of(r)][:2] == ["芙蓉社区", "曲水社区"]
    r = dlg.handle(text("芙蓉东苑5号楼1单元"))
    said = all_text(r)
    assert "芙蓉社区第五网格" in said and "陈静（示例）" in said  # the kept question, answered for their grid
    assert kb.asked == [] and cases(engine) == []


def test_community_facts_without_consent_name_every_community(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock, consent=False, estate=None, building=None)
    dlg.handle(command("start"))
    said = all_text(dlg.handle(text("晚上有事找谁")))
    assert "芙蓉社区值班台" in said and "曲水社区值班台" in said and "119" in said
    assert texts.FACT_BIND_NEEDS_CONSENT in said


# ---------------------------------------------------------------- mediation
@pytest.mark.parametrize("message", ["和楼上邻居因为漏水闹矛盾了 想找人调解一下", "能不能找社区给俺们说和说和"])
def test_a_mediation_request_goes_to_the_mediator(dlg, engine, clock, policies, kb, message):
    make_resident(engine, policies, clock=clock)
    said = [all_text(dlg.handle(text(message)))]
    for _ in range(3):
        if "照片" in said[-1] and "跳过" in said[-1]:
            said.append(all_text(dlg.handle(text("跳过"))))
        elif "我帮您登记" in said[-1]:
            said.append(all_text(dlg.handle(text("对"))))
    (case,) = cases(engine)
    assert case.intent == "dispute" and kb.asked == []
    with session_scope(engine) as s:
        assert case.assignee_id == worker_of(s, FURONG_MEDIATOR).id
    assert "纠纷调解" in "\n".join(said)


def test_the_clarify_question_offers_mediation(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock)
    r = dlg.handle(text("关于暖气"))
    assert texts.CLARIFY in all_text(r)
    r = dlg.handle(press(find_button(r, texts.BTN_CLARIFY_DISPUTE)))
    for _ in range(3):
        said = all_text(r)
        if "照片" in said and "跳过" in said:
            r = dlg.handle(text("跳过"))
        elif "我帮您登记" in said:
            r = dlg.handle(text("对"))
    (case,) = cases(engine)
    assert case.intent == "dispute"


def test_typed_candidate_label_counts_as_a_pick(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock)
    q = question_of(dlg, kb, "低保和特困有啥区别 俺该申请哪个", CLARIFY)
    dlg.handle(text("低保和特困有啥区别 俺该申请哪个"))
    dlg.handle(text(DIBAO.label()))
    assert kb.asked_in == [(q, "dibao")]


def test_asking_for_a_person_instead_of_picking_counts_as_none_picked(dlg, engine, clock, policies, kb):
    make_resident(engine, policies, clock=clock)
    question_of(dlg, kb, "低保和特困有啥区别 俺该申请哪个", CLARIFY)
    dlg.handle(text("低保和特困有啥区别 俺该申请哪个"))
    r = dlg.handle(text("转人工"))
    (case,) = cases(engine)
    assert case.code in all_text(r)
    assert [i.kind for i in reviews(engine)] == ["clarify_unpicked"]


# ---------------------------------------------------------------- answered questions and refusals are counted
def test_each_question_shown_is_recorded_once_with_its_outcome_and_counted_by_stats(dlg, engine, clock, policies,
                                                                                  kb):
    make_resident(engine, policies, clock=clock)
    question_of(dlg, kb, "居住证怎么办", Answer("带身份证和住所证明。", True, "faq"))
    dlg.handle(text("居住证怎么办"))
    dlg.handle(text("医保卡丢了咋补办"))  # not found
    with session_scope(engine) as s:
        outcomes = [e.data["outcome"] for e in list_audit(session=s, action=QUESTION_ACTION)]
        figures = overview(session=s, now=clock.now())
    assert outcomes == ["answered", "not_found"]
    assert (figures.today.answered_questions, figures.today.refusals) == (1, 1)
