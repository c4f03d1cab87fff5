"""Message understanding: offline model + consistency, the danger rules (raise only), LLM fallback, odd input,
parts, and the training cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bot.understanding import MessageClassifier, load_classifier
from bot.understanding.rules import apply_rules
from bot.understanding.training import ensure_model
from knowledge.llm import Deadline, OpenAICompatLLM
from policies.masking import contains_unmasked
from tests.servers.openai_compat import OpenAICompatServer


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained model for the whole session: every classifier below loads it from this cache."""
    path = tmp_path_factory.mktemp("models")
    ensure_model(path)
    return path


@pytest.fixture(scope="session")
def clf(model_dir: Path) -> MessageClassifier:
    return MessageClassifier(model_dir=model_dir)


def llm_clf(model_dir: Path, server: OpenAICompatServer, policies, timeout_s: float = 2.0) -> MessageClassifier:
    llm = OpenAICompatLLM(base_url=server.base_url, api_key="test", model="m", timeout_s=timeout_s)
    return MessageClassifier(model_dir=model_dir, llm=llm, policies=policies)


def test_offline_labels_and_consistency(clf: MessageClassifier) -> None:
    u = clf.understand("着火了！5号楼三楼冒黑烟 快来人")
    assert (u.intent.label, u.urgency.label, u.mode) == ("help", "emergency", "offline")
    assert u.category.label == "safety"
    thanks = clf.understand("谢谢网格员，楼道灯修好了，效率真高👍")
    assert thanks.intent.label == "feedback"
    assert (thanks.category.label, thanks.urgency.label) == ("other", "normal")
    for axis in (u.intent, u.category, u.urgency):
        assert abs(sum(axis.scores.values()) - 1.0) < 1e-3 and axis.confidence == axis.scores[axis.label]


@pytest.mark.parametrize("text", ["电动车能在楼道充电吗", "上次着火的事处理了吗", "下周六上午消防演练通知，请大家配合",
                                  "我想给家里老人申请个防走失手环", "隔壁饭店油烟太大了 不是着火 就是呛"])
def test_rules_do_not_fire_on_talk_about_danger(text: str) -> None:
    assert apply_rules(text).urgency != "emergency", apply_rules(text).hits


@pytest.mark.parametrize("text", ["有股很大的煤气味 整个楼道都是", "俺娘被关电梯里了 咋整", "有人晕倒了 在菜市场门口",
                                  "我不想活了", "孩子走丢了 穿红衣服", "电线掉地上了还冒火花", "屋里进水了 淹到脚脖子",
                                  "着伙了 快来", "楼下有人动刀了", "然气味好大",
                                  # widened phrases: live metal, falling glass, indoor water, collapse, missing,
                                  # weapons, self-harm
                                  "小区门口的铁栏杆有电 摸一下就麻手", "路灯杆漏电了", "家里泡了 水到脚脖子",
                                  "屋里水漫金山了", "五楼窗户玻璃要掉下来了 底下都是人", "俺爹突然抽搐 叫不醒",
                                  "老伴倒下去了 没气了", "俺娘找不着了 她有痴呆", "孩子在公园走丢了",
                                  "有人拿刀在楼下追人", "活着没意思 不想活了", "俺想跳楼",
                                  "燃气管子被钻穿了 呲呲往外喷气", "gas smell 在三楼"])
def test_rules_fire_on_danger_now(text: str) -> None:
    assert apply_rules(text).urgency == "emergency"


def test_rule_layer_raises_but_never_lowers(clf: MessageClassifier) -> None:
    # the model alone calls a chatty message normal; a danger phrase in it must raise it
    u = clf.understand("哈哈 今天天气不错 对了楼道里有股煤气味")
    assert u.urgency.label == "emergency" and any(h.startswith("gas") for h in u.rule_hits)
    assert u.intent.label == "help"
    # an emergency the model sees needs no rule, and no rule may pull it down
    u2 = clf.understand("救命 电梯卡住了 出不去")
    assert u2.urgency.label == "emergency"
    # a rule for "urgent" does not lower a model emergency
    u3 = clf.understand("停水了 而且楼道里全是烟 着火了")
    assert u3.urgency.label == "emergency"


def test_llm_answer_used_and_rules_still_raise(model_dir: Path, policies) -> None:
    with OpenAICompatServer() as server:
        c = llm_clf(model_dir, server, policies)
        server.queue_reply(json.dumps({"intent": "complaint", "category": "environment", "urgency": "normal"}))
        u = c.understand("楼下饭店油烟太大 我电话13812345678")
        assert u.mode == "llm" and (u.intent.label, u.category.label) == ("complaint", "environment")
        req = server.chat_requests()[-1]["body"]
        assert req["response_format"]["json_schema"]["schema"]["properties"]["urgency"]["enum"] == [
            "emergency", "urgent", "normal"]
        server.queue_reply(json.dumps({"intent": "chitchat", "category": "other", "urgency": "normal"}))
        u2 = c.understand("楼道里好大的煤气味")
        assert u2.mode == "llm" and u2.urgency.label == "emergency" and u2.intent.label == "help"
        assert "13812345678" not in server.prompts_text() and "138****5678" in server.prompts_text()


@pytest.mark.parametrize("failure", ["error", "slow", "bad_label", "malformed", "not_json"])
def test_llm_failure_falls_back_to_offline(model_dir: Path, policies, failure: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    with OpenAICompatServer() as server:
        c = llm_clf(model_dir, server, policies, timeout_s=0.5)
        if failure == "error":
            server.queue_error(500)
        elif failure == "slow":
            server.queue_delay(2.0)
            server.queue_reply(json.dumps({"intent": "help", "category": "safety", "urgency": "emergency"}))
        elif failure == "bad_label":
            server.queue_reply(json.dumps({"intent": "help", "category": "噪音", "urgency": "normal"}))
        elif failure == "malformed":
            server.queue_malformed()
        else:
            server.queue_reply("好的，这是投诉")
        text = "身份证370102199003071234丢了 电话 0531-88886666 怎么补办"
        u = c.understand(text)
        assert u.mode == "llm_fallback"
        assert u.intent.label == "inquiry" and u.category.label == "documents"
        seen = server.prompts_text()
        assert server.chat_requests() and not contains_unmasked(seen)
        assert "88886666" not in caplog.text and "199003071234" not in caplog.text


@pytest.mark.parametrize("text", ["", "   ", "😊😊", "？？？", "a" * 10000, "着火" * 5000, "\x00\u200b"])
def test_odd_input_gets_an_answer(clf: MessageClassifier, text: str) -> None:
    u = clf.understand(text)
    assert u.intent.label and u.category.label and u.urgency.label
    if text.strip() == "" or text == "😊😊":
        assert u.intent.label == "chitchat" and u.category.label == "other"


def test_two_problems_split_one_problem_not(clf: MessageClassifier) -> None:
    u = clf.understand("楼道灯坏了，还有垃圾好几天没人清")
    assert len(u.parts) == 2
    assert [p.category.label for p in u.parts] == ["building", "environment"]
    assert clf.understand("电梯坏了三天了，楼上老人下不了楼").parts == []
    assert clf.understand("楼道灯坏了，黑咕隆咚的，老人摔了一跤").parts == []


def test_details_in_understanding(clf: MessageClassifier) -> None:
    u = clf.understand("芙蓉东苑3号楼2单元1201 从早上到现在一直停水 联系13912345678")
    d = u.details
    assert (d.estate, d.building, d.unit, d.room) == ("芙蓉东苑", 3, 2, "1201")
    assert d.phones == ["139****5678"] and "13912345678" not in u.text
    assert u.urgency.label in ("urgent", "emergency")


def test_training_cache_is_reused(tmp_path: Path) -> None:
    _, report = ensure_model(tmp_path)
    assert report.trained and report.path.exists()
    mtime = report.path.stat().st_mtime_ns
    _, again = ensure_model(tmp_path)
    assert not again.trained and again.path == report.path and report.path.stat().st_mtime_ns == mtime


def test_load_classifier_trains_on_first_use(settings) -> None:
    clf = load_classifier(settings)
    assert clf.report is not None and clf.report.trained
    assert clf.report.path.parent == Path(settings.var_dir) / "models"
    assert load_classifier(settings).report.trained is False  # type: ignore[union-attr]


def test_training_lines_follow_the_labelling_contract(policies) -> None:
    """Every training line uses taxonomy labels; in the shipped files topicless intents are other/normal and
    inquiry, suggestion and wish are normal and have a real topic (the contract service._decide enforces at run
    time). The independent lines keep their writer's reading of the taxonomy (an urgent question stays an
    inquiry): each head learns its own axis from them, and the contract is applied when a message is read."""
    from bot.understanding.training import read_examples, training_files

    tax = policies.taxonomy
    problems = []
    for path in training_files():
        independent = path.name.startswith("independent_")
        for ex in read_examples([path]):
            where = f"{path.name}: {ex.text[:30]}"
            if ex.intent not in tax.intents or ex.category not in tax.categories or ex.urgency not in tax.urgencies:
                problems.append(f"unknown label {where}")
            elif independent:
                continue
            elif ex.intent in ("status", "feedback", "chitchat") and (ex.category, ex.urgency) != ("other", "normal"):
                problems.append(f"topicless not other/normal {where}")
            elif ex.intent in ("inquiry", "suggestion", "wish") and (ex.urgency != "normal" or ex.category == "other"):
                problems.append(f"topical intent without topic or with urgency {where}")
    assert not problems, problems[:10]


def test_featuriser_rows_match_sklearn() -> None:
    """The plain-Python feature path used at run time gives the same TF-IDF values as sklearn at fit time."""
    import numpy as np

    from bot.understanding.model import Featuriser, normalise

    texts = [normalise(t) for t in ("楼道灯不亮了 咋整", "俺报的单子 到哪一步了", "谢谢师傅 五星好评👍",
                                     "想要个轮椅", "楼道灯 修好了 谢谢", "咋整 到哪一步了")]
    feat = Featuriser()
    fitted = feat.fit_transform(texts).toarray()
    again = feat.transform(texts).toarray()
    assert fitted.shape[1] == feat.n_features > 0
    assert np.allclose(fitted, again, atol=1e-5)


def test_llm_call_gets_the_time_the_deadline_leaves(model_dir: Path, policies) -> None:
    """The classifier's LLM call is cut to the turn's remaining time, not the adapter's own timeout; with no
    time left it is not made at all and the offline model answers at once."""
    with OpenAICompatServer() as server:
        c = llm_clf(model_dir, server, policies, timeout_s=5.0)
        server.hang()
        started = time.monotonic()
        u = c.understand("楼道灯坏了好几天了", deadline=Deadline(0.4))
        assert u.mode == "llm_fallback" and time.monotonic() - started < 0.9
        with Deadline(0.3).applied():  # the ambient deadline a dialogue turn applies
            started = time.monotonic()
            assert c.understand("楼道灯坏了好几天了").mode == "llm_fallback"
            assert time.monotonic() - started < 0.8
        asked = len(server.chat_requests())
        started = time.monotonic()
        u = c.understand("楼道灯坏了好几天了", deadline=Deadline(0.0))
        assert u.mode == "llm_fallback" and u.category.label and time.monotonic() - started < 0.2
        assert len(server.chat_requests()) == asked  # nothing sent


def test_offline_reading_sends_nothing(model_dir: Path, policies) -> None:
    with OpenAICompatServer() as server:
        c = llm_clf(model_dir, server, policies)
        u = c.understand_offline("办居住证要带什么")
        assert u.mode == "offline" and u.intent.label == "inquiry"
        assert server.chat_requests() == []
