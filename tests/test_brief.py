"""knowledge.brief: a short answer of whole sentences, the asked fact first, nothing lost and nothing cut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knowledge.asks import ASKS, gives
from knowledge.brief import BULLET, CLAUSE_MARKS, Brief, brief, sanitise

ALLOWANCE = [
    "年满80周岁、具有本市户籍的老年人可以申请高龄津贴。",
    "申请人或家属携带身份证、户口本到户籍所在地社区居委会提出申请。",
    "社区初审后报街道审核，区民政局审批。",
    "80至89周岁每人每月100元，90至99周岁每人每月200元，100周岁以上每人每月500元。",
    "津贴按月发放到老年人本人的社保卡。",
    "咨询电话：0531-12345678（示意）。",
]


def points_of(text: str) -> list[str]:
    """The points of a Brief field: bullet lines, or one plain point."""
    if not text:
        return []
    lines = text.split("\n")
    if len(lines) > 1:
        assert all(line.startswith(BULLET) for line in lines), text
        return [line[len(BULLET):] for line in lines]
    assert not text.startswith(BULLET), text
    return [text]


# --- examples ------------------------------------------------------------------------------------------
def test_six_bullets_become_three_up_front_and_the_rest_in_reading_order() -> None:
    b = brief(ALLOWANCE, max_points=3, max_chars=200)
    assert points_of(b.text) == ALLOWANCE[:3]
    assert points_of(b.more) == [*ALLOWANCE[3:5], "咨询电话：0531-12345678。"]


def test_the_asked_fee_comes_first_and_the_rest_keeps_reading_order() -> None:
    b = brief(ALLOWANCE, wanted=["费用"])
    shown = points_of(b.text)
    assert shown[0] == ALLOWANCE[3]
    assert gives([ASKS[0]], shown[0])
    assert "…" not in b.text + b.more
    rest = points_of(b.more)
    assert rest == sorted(rest, key=lambda p: next(i for i, s in enumerate(ALLOWANCE) if sanitise(s) == p))


def test_english_kind_names_are_the_same_as_the_asks_names() -> None:
    assert brief(ALLOWANCE, wanted=["phone"]) == brief(ALLOWANCE, wanted=["电话"])
    assert points_of(brief(ALLOWANCE, wanted=["phone"]).text)[0] == "咨询电话：0531-12345678。"
    with pytest.raises(ValueError, match="unknown kinds"):
        brief(ALLOWANCE, wanted=["price"])


def test_one_point_is_plain_text_and_nothing_left_is_an_empty_more() -> None:
    hours = "社区卫生服务中心周一至周五8:30-17:00开放。"
    assert brief([hours]) == Brief(hours, "")
    assert brief([]) == Brief("", "")
    assert brief(["（示意）", "  "]) == Brief("", "")


def test_a_first_point_over_the_budget_is_kept_whole() -> None:
    long = "电动自行车不得在楼道、疏散通道、安全出口停放充电，" * 3 + "违者由消防救援机构依法处理。"
    assert 60 < len(long) <= 120
    b = brief([long, "小区集中充电桩每度电收费1元。"], max_chars=60)
    assert b.text == long
    assert b.more == "小区集中充电桩每度电收费1元。"


def test_a_very_long_sentence_is_split_after_a_clause_mark_and_its_rest_goes_to_more() -> None:
    papers = ["身份证", "户口本", "收入证明", "房产证明", "残疾证", "病历"] * 6
    long = "申请低保需要提供" + "、".join(papers) + "等材料。"
    assert len(long) > 2 * 60
    b = brief([long, "街道受理后30个工作日内审核。"], max_chars=60)
    assert b.text[-1] in CLAUSE_MARKS and len(b.text) <= 60
    more = points_of(b.more)
    assert b.text + more[0] == long
    assert more[1:] == ["街道受理后30个工作日内审核。"]


def test_a_split_never_leaves_the_asked_fact_behind() -> None:
    long = "、".join(["身份证", "户口本", "收入证明", "房产证明"] * 8) + "，办理费用50元，到街道便民服务中心办理。"
    b = brief([long], wanted=["费用"], max_chars=40)
    assert "50元" in b.text
    assert b.text + b.more == long


def test_no_trailing_ellipsis_or_cut_sentence_from_a_caller_that_cut_one() -> None:
    b = brief(["超过120天未认证的暂停发放…", "认证可在“爱山东”App完成。"])
    assert not b.text.rstrip().endswith(("…", "..."))
    assert points_of(b.text)[0] == "超过120天未认证的暂停发放"


def test_sanitise_strips_editorial_marks_and_sentences_about_the_assistant() -> None:
    assert sanitise("咨询电话：0531-12345678（示意）。") == "咨询电话：0531-12345678。"
    assert sanitise("收费标准(示意)：每月30元。") == "收费标准：每月30元。"
    assert sanitise("示意：社区服务站地址为历下区某路1号。") == "社区服务站地址为历下区某路1号。"
    assert sanitise("本回答由泉小智整理。请以窗口答复为准。") == "请以窗口答复为准。"
    assert sanitise("QuanBot 提示：以上仅供参考。") == ""
    assert sanitise("• 带上身份证。") == "带上身份证。"
    assert sanitise("材料包括身份证、户口本……") == "材料包括身份证、户口本"
    assert sanitise("第一行\n第二行") == "第一行 第二行"
    b = brief(["泉小智为您查到：", "办理时间为工作日9:00-17:00。"])
    assert b == Brief("办理时间为工作日9:00-17:00。", "")


# --- properties ----------------------------------------------------------------------------------------
HANZI = "社区街道居民老人申请办理材料证明户口身份补贴津贴服务中心窗口时间审核发放标准政策家庭残疾低保医疗"
FACTS = ["每月补贴100元。", "咨询电话0531-12345。", "15个工作日内办结。", "到街道便民服务中心办理。"]
sentence = st.one_of(
    st.builds(lambda body, end: body + end, st.text(alphabet=HANZI + "，、；0123456789", min_size=1, max_size=90),
              st.sampled_from(["。", "！", "？"])),
    st.sampled_from(FACTS),
)
ALIASES = {"fee": "费用", "phone": "电话", "time": "时间", "place": "地点"}
kinds = st.lists(st.sampled_from([a.name for a in ASKS] + ["fee", "phone", "time", "place"]), max_size=2)


def _merge(text_points: list[str], more_points: list[str], sentences: list[str]) -> list[str]:
    """The output's points with a split sentence put back together (its head leads text, its rest is in more)."""
    if not text_points or text_points[0] in sentences:
        return text_points + more_points
    head = text_points[0]
    j = next(j for j, rest in enumerate(more_points) if head + rest in sentences)
    return [head + more_points[j], *text_points[1:], *more_points[:j], *more_points[j + 1:]]


@settings(max_examples=300, deadline=None)
@given(st.lists(sentence, max_size=8), kinds, st.integers(1, 5), st.integers(10, 150))
def test_every_sentence_is_kept_once_whole_and_the_asked_fact_leads(
        sentences: list[str], wanted: list[str], max_points: int, max_chars: int) -> None:
    b = brief(sentences, wanted=wanted, max_points=max_points, max_chars=max_chars)
    distinct = list(dict.fromkeys(sentences))
    shown, more = points_of(b.text), points_of(b.more)
    # every sentence exactly once, across text and more
    assert sorted(_merge(shown, more, distinct)) == sorted(distinct)
    # at most max_points up front, about max_chars unless one point
    assert len(shown) <= max_points
    if len(shown) > 1:
        assert sum(map(len, shown)) <= max_chars
    # no point is a prefix cut of a sentence, except a very long one split after a clause mark
    for p in shown + more:
        if p not in distinct:
            whole = next(s for s in distinct if p in s)
            assert len(whole) > 2 * max_chars
            assert (whole.startswith(p) and p[-1] in CLAUSE_MARKS) or whole.endswith(p)
    assert not (b.text + b.more).endswith("…")
    # the asked fact first, when any sentence gives it
    asked = [a for a in ASKS if a.name in {ALIASES.get(w, w) for w in wanted}]
    if asked and any(gives(asked, s) for s in distinct):
        assert gives(asked, shown[0])
    # more keeps reading order
    order = [distinct.index(p) for p in more if p in distinct]
    assert order == sorted(order)


@settings(max_examples=100, deadline=None)
@given(st.lists(sentence, min_size=1, max_size=6))
def test_sanitise_leaves_clean_sentences_alone_and_is_idempotent(sentences: list[str]) -> None:
    for s in sentences:
        assert sanitise(s) == s
        noisy = f"（示意）{s}泉小智提醒您。"
        assert sanitise(noisy) == s
        assert sanitise(sanitise(noisy)) == sanitise(noisy)
