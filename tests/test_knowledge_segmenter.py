"""The segmenter with jieba's dictionary on disk cuts exactly as jieba does, and keeps indexed texts' tokens."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import jieba
import pytest

from knowledge.retrieval import content_words, tokenize
from knowledge.segmenter import Segmenter
from tests.factories import HEATING, PERMIT

QUESTIONS = ["办居住证要带什么", "俺家暖气不热咋整，找谁修？", "居住证过期了还能补办吗", "高龄津贴需要认证吗",
             "驾照到期了咋换证", "12345热线打不通咋办", "ETC卡丢了去哪补", "我叫张三 手机13812345678", ""]


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> Segmenter:
    return Segmenter(tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("text", [*QUESTIONS, PERMIT, HEATING])
def test_cuts_are_jiebas(cached: Segmenter, text: str) -> None:
    assert cached.cut(text) == jieba.lcut(text)
    assert cached.cut_for_search(text) == jieba.lcut_for_search(text)
    assert tokenize(text, cached) == tokenize(text) and content_words(text, cached) == content_words(text)


def test_indexed_tokens_are_kept_on_disk(tmp_path: Path) -> None:
    texts = [PERMIT.lower(), HEATING.lower()]
    first = Segmenter(tmp_path)
    assert first.cut_indexed(texts) == [jieba.lcut_for_search(t) for t in texts] and first.cuts == 2
    again = Segmenter(tmp_path)  # a restart
    assert again.cut_indexed([*texts, "新的一段"]) == [*first.cut_indexed(texts), jieba.lcut_for_search("新的一段")]
    assert again.cuts == 1


def test_the_dictionary_is_copied_once_and_questions_are_never_kept(tmp_path: Path) -> None:
    seg = Segmenter(tmp_path)
    seg.cut_for_search("我叫张三 居住证咋办")
    seg.cut("我叫张三 居住证咋办")
    (path,) = tmp_path.glob("jieba-*.sqlite")
    with sqlite3.connect(path) as db:
        entries = db.execute("SELECT count(*) FROM entries").fetchone()[0]
        assert entries > 100_000 and db.execute("SELECT count(*) FROM tokens").fetchone()[0] == 0
    Segmenter(tmp_path).cut("居住证")
    assert list(tmp_path.glob("jieba-*.sqlite")) == [path]


def test_without_a_directory_it_is_jiebas_default_tokenizer() -> None:
    seg = Segmenter()
    assert seg.cut_indexed([PERMIT]) == [jieba.lcut_for_search(PERMIT)] and seg.cuts == 1
