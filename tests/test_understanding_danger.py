"""The danger rules and the classifier's urgency on look-alikes: an emergency needs the danger now. Drills, past
clauses, stopped water, dead cables and settled dangers are not emergencies; falls, fights and things thrown onto
people are; outages someone caused are urgent. (Sentences written for these tests, not taken from any eval set.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.understanding.rules import apply_rules
from bot.understanding.service import MessageClassifier
from bot.understanding.training import ensure_model


@pytest.fixture(scope="module")
def clf(tmp_path_factory: pytest.TempPathFactory) -> MessageClassifier:
    path: Path = tmp_path_factory.mktemp("models")
    ensure_model(path)
    return MessageClassifier(model_dir=path)


@pytest.mark.parametrize("text", [
    "下周三社区搞消防演练 会放烟 还有着火的演示 大家别害怕",
    "去年冬天楼上着火了，现在楼道还是黑乎乎的，想问问这个谁来刷",
    "卫生间水管裂了个口子 俺把总阀关了 不漏了 啥时候能来换",
    "工地挖断了电缆 整栋楼都没电了",
    "单元门的门禁坏了关不上 谁都能进",
    "燃气费在哪交 手机上能交不",
    "电梯停了 里面没人困着 就是问问几点能修好",
    "俺这几天心里急得上火 嘴上起泡",
    "电视遥控器按了没反应",
])
def test_look_alikes_are_not_emergencies(clf: MessageClassifier, text: str) -> None:
    assert clf.understand(text).urgency.label != "emergency", text


@pytest.mark.parametrize("text", [
    "俺娘在厨房摔倒了 爬不起来",
    "楼下有人打架 一个满脸是血",
    "两口子吵着吵着 男的抄着棍子追着打",
    "楼上又在往下扔花盆 底下有小孩",
    "工地那个塔吊歪了 下面还有干活的人",
    "水管爆了 水哗哗往外喷 都流到客厅了",
    "前天开始就闻着一股煤气味 现在还有",
])
def test_dangers_now_are_emergencies(clf: MessageClassifier, text: str) -> None:
    u = clf.understand(text)
    assert u.urgency.label == "emergency", (text, u.rule_hits)


@pytest.mark.parametrize(("text", "rule"), [
    ("物业把俺们楼的水给停了", "no_water"),
    ("供热站把暖气阀门关了 家里冷得很", "no_heat"),
    ("全屋没电 闸也推不上去", "no_power"),
    ("装修的把承重墙砸了个大洞", "bearing_wall"),
    ("孩子烧到39度5 医院在哪", "high_fever"),
    ("电梯坏了两天了 俺妈腿脚不好住十五楼", "elevator_out"),
    ("井盖让人偷走了 就剩一个黑窟窿", "manhole"),
    ("水管冻裂了 家里没水用", "burst_pipe"),
])
def test_outages_are_urgent(text: str, rule: str) -> None:
    r = apply_rules(text)
    assert r.urgency == "urgent" and any(h.startswith(rule + ":") for h in r.hits), (text, r.hits)


def test_a_model_emergency_on_calmed_words_falls_to_its_next_reading(clf: MessageClassifier) -> None:
    """The rules found the danger words and read them as a drill: the model's echo of them is no evidence."""
    r = apply_rules("消防演练通知：周六上午楼里会冒烟 有着火的演示")
    assert r.urgency is None and {"fire", "smoke"} & set(r.calmed)


def test_a_complaint_about_a_fight_keeps_its_intent_and_is_an_emergency(clf: MessageClassifier) -> None:
    u = clf.understand("俺要投诉对门 两口子打架 女的在喊救命")
    assert u.urgency.label == "emergency" and u.intent.label != "chitchat"


@pytest.mark.parametrize("text", [
    "俺闺女考学的事 急得俺要着火了",
    "这两天加班忙得快晕过去了",
    "楼道里堆了好多纸箱子 怕着火 能不能清一清",
    "上礼拜厨房煤气漏过一回 已经修好了 问问还用检查不",
    "早上闻到一股煤气味 现在没了 找谁来查查",
    "楼下老有人抽烟 楼道里都是烟 呛人",
    "电梯困人的话打哪个电话 问问备着",
])
def test_rules_let_figures_of_speech_fears_and_past_dangers_be(text: str) -> None:
    """A metaphor (急得着火), a fear (怕着火), a danger said to be over (现在没了, 上礼拜) or cigarette smoke is no
    danger now: no emergency rule fires (the model's reading of the same words is calmed or left alone)."""
    r = apply_rules(text)
    assert r.urgency != "emergency", (text, r.hits)


@pytest.mark.parametrize(("text", "rule"), [
    ("俺家小孙子吞了个硬币下去", "collapse"),
    ("是不是煤气中毒了 俺俩都头晕恶心", "gas"),
    ("插座那进水了 墙上的水还在往下流", "live_wire"),
    ("楼顶上坐着个小孩 腿搭在外面", "falling_soon"),
    ("俺爹在屋里 喊他也不答应 门反锁着", "collapse"),
    ("外孙子出去玩 小区都找遍了也没见着人", "missing"),
    ("雨下得太大 水都往俺家屋里灌", "flooding"),
    ("工地的广告牌快掉了 下面是学校门口", "structure"),
])
def test_rules_catch_dangers_said_plainly(text: str, rule: str) -> None:
    """Swallowed objects, dizziness beside gas, water at the electrics, a child on a roof edge, someone who does
    not answer, a child searched for everywhere, water pouring in, a sign about to fall on a school gate."""
    r = apply_rules(text)
    assert r.urgency == "emergency" and any(h.startswith(rule + ":") for h in r.hits), (text, r.hits)


def test_a_follow_up_on_a_reported_outage_stays_a_status_question(clf: MessageClassifier) -> None:
    """The outage rule raises the urgency, but a resident asking after a case already reported is not opening a
    new one: the intent stays status (only an emergency turns small talk or a follow-up into a call for help)."""
    u = clf.understand("俺报的停电那个单子 派人了没有 到现在还没来电")
    assert u.intent.label == "status" and u.urgency.label == "urgent", (u.intent.label, u.urgency.label, u.rule_hits)


def test_a_follow_up_on_an_outage_still_waiting_keeps_its_urgency(clf: MessageClassifier) -> None:
    """Status has no topic, but a case about heating still cold after three days is as urgent as when it was
    reported: the model's "urgent" stands for a status question (no rule fires on this wording)."""
    u = clf.understand("报修的暖气过了三天了还是冰凉 到底啥时候来人")
    assert (u.intent.label, u.urgency.label, u.category.label) == ("status", "urgent", "other"), u.rule_hits
