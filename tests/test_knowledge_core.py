"""Knowledge base: loaders, chunking, incremental ingestion, retrieval, answers, FAQ (hash embedder: fast)."""

from __future__ import annotations

from pathlib import Path

import docx
import pytest

from knowledge.answers import KnowledgeService
from knowledge.chunking import chunk_document
from knowledge.documents import LoadError, load_document
from knowledge.embeddings import CachedEmbedder
from knowledge.faq import FaqEntry, FaqIndex
from knowledge.ingest import ingest_path
from knowledge.retrieval import Filters
from knowledge.store import ChromaStore
from tests.embedders import CountingHashEmbedder, HashEmbedder, hash_retriever
from tests.factories import HEATING, PERMIT, SharedAI


def _pdf_bytes(text: str) -> bytes:
    """A minimal valid one-page PDF whose content stream draws `text` (ASCII, Helvetica)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
             b"/Resources << /Font << /F1 5 0 R >> >> >>"),
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = b"%PDF-1.4\n"
    offsets = []
    for n, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return out


@pytest.fixture
def kb(tmp_path: Path) -> tuple[ChromaStore, CachedEmbedder]:
    emb = CachedEmbedder(HashEmbedder(), tmp_path / "var" / "cache.sqlite")
    return ChromaStore(collection="kb-test", chroma_dir=tmp_path / "chroma"), emb


def test_markdown_front_matter_and_heading_paths(docs: Path) -> None:
    doc = load_document(docs / "residence-permit.md")
    assert doc.title == "居住证办理指南" and doc.tags == ["居住证", "外地人"] and doc.category == "certificates"
    chunks = chunk_document(doc)
    paths = [c.heading_path for c in chunks]
    assert "居住证办理指南 > 所需材料" in paths and "居住证办理指南 > 签注与有效期" in paths
    assert all("---" not in c.text and "title:" not in c.text for c in chunks)


def test_long_chinese_paragraph_splits_at_sentence_ends(tmp_path: Path) -> None:
    sentence = "居住证需要每年签注一次，请按时办理" * 3 + "。"
    p = tmp_path / "long.md"
    p.write_text("# 指南\n\n## 签注\n\n" + sentence * 12, encoding="utf-8")
    chunks = chunk_document(load_document(p), max_chars=120)
    assert len(chunks) > 3
    assert all(len(c.text) <= 120 for c in chunks)
    assert all(c.text.endswith("。") for c in chunks)
    assert {c.heading_path for c in chunks} == {"指南 > 签注"}


def test_loaders_txt_html_docx_pdf(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("垃圾分类分为四类。", encoding="utf-8")
    (tmp_path / "b.html").write_text("<html><head><title>停车指南</title><script>x()</script></head><body>"
                                     "<h2>收费</h2><p>夜间停车每晚5元。</p></body></html>", encoding="utf-8")
    d = docx.Document()
    d.add_heading("养犬登记", level=1)
    d.add_paragraph("登记费每只每年100元。")
    d.save(str(tmp_path / "c.docx"))
    (tmp_path / "d.pdf").write_bytes(_pdf_bytes("Dog registration fee is 100 yuan"))
    assert "四类" in load_document(tmp_path / "a.txt").text
    html = load_document(tmp_path / "b.html")
    assert html.title == "停车指南" and "## 收费" in html.text and "x()" not in html.text
    dx = load_document(tmp_path / "c.docx")
    assert "# 养犬登记" in dx.text and "100元" in dx.text
    assert "100 yuan" in load_document(tmp_path / "d.pdf").text


def test_ingest_is_idempotent_updates_and_deletes(docs: Path, kb: tuple[ChromaStore, CachedEmbedder]) -> None:
    store, emb = kb
    first = ingest_path(docs, store=store, embedder=emb)
    count = store.count()
    assert sorted(first.added) == ["heating", "residence-permit"] and count > 0
    again = ingest_path(docs, store=store, embedder=emb)
    assert again.added == [] and sorted(again.unchanged) == ["heating", "residence-permit"]
    assert store.count() == count
    (docs / "heating.md").write_text(HEATING.replace("18℃", "20℃") + "\n## 报停\n\n报停须在10月31日前办理。\n",
                                     encoding="utf-8")
    upd = ingest_path(docs, store=store, embedder=emb)
    assert upd.updated == ["heating"]
    texts = " ".join(c.text for c in store.all_chunks())
    assert "20℃" in texts and "18℃" not in texts and "报停须在" in texts
    (docs / "heating.md").unlink()
    gone = ingest_path(docs, store=store, embedder=emb)
    assert gone.removed == ["heating"]
    assert {c.metadata["doc_id"] for c in store.all_chunks()} == {"residence-permit"}


def test_corrupt_file_is_reported_and_skipped(docs: Path, kb: tuple[ChromaStore, CachedEmbedder]) -> None:
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage that is not a pdf")
    (docs / "bad.docx").write_bytes(b"PK\x03\x04 not a zip")
    store, emb = kb
    report = ingest_path(docs, store=store, embedder=emb)
    assert {name for name, _ in report.failed} == {"broken.pdf", "bad.docx"}
    assert sorted(report.added) == ["heating", "residence-permit"]
    with pytest.raises(LoadError, match=r"broken\.pdf"):
        load_document(docs / "broken.pdf")


def test_embedding_cache_avoids_reembedding(tmp_path: Path, docs: Path) -> None:
    emb = CachedEmbedder(HashEmbedder(), tmp_path / "cache.sqlite")
    ingest_path(docs, store=ChromaStore(collection="kb-one", chroma_dir=tmp_path / "c1"), embedder=emb)
    misses = emb.misses
    ingest_path(docs, store=ChromaStore(collection="kb-two", chroma_dir=tmp_path / "c2"), embedder=emb)
    assert emb.misses == misses and emb.hits >= misses > 0


def _service(docs: Path, kb: tuple[ChromaStore, CachedEmbedder], faq: list[FaqEntry] | None = None,
             llm: object = None) -> KnowledgeService:
    store, emb = kb
    ingest_path(docs, store=store, embedder=emb)
    retriever = hash_retriever(store=store, embedder=emb)
    return KnowledgeService(retriever=retriever, faq=FaqIndex(faq or [], emb), llm=llm)  # type: ignore[arg-type]


def test_offline_answer_cites_sources(docs: Path, kb: tuple[ChromaStore, CachedEmbedder]) -> None:
    answer = _service(docs, kb).ask("居住证多久签注一次")
    assert answer.answered and answer.mode == "offline"
    assert "签注" in answer.text and len(answer.text) <= 350
    assert answer.citations[0].title == "居住证办理指南"
    assert answer.citations[0].section == "签注与有效期"
    assert "来源" in answer.text


def test_not_in_kb_refuses_honestly(docs: Path, kb: tuple[ChromaStore, CachedEmbedder]) -> None:
    answer = _service(docs, kb).ask("红烧肉咋做好吃")
    assert not answer.answered and answer.citations == []
    assert "转人工" in answer.text


def test_filters_restrict_results(docs: Path, kb: tuple[ChromaStore, CachedEmbedder]) -> None:
    svc = _service(docs, kb)
    res = svc.retriever.search("室温 供暖 居住证", k=10, filters=Filters(category="housing"))
    assert res.hits and {h.doc_id for h in res.hits} == {"heating"}
    from datetime import date
    res = svc.retriever.search("居住证签注", k=10, filters=Filters(effective_on=date(2024, 12, 1)))
    assert "residence-permit" not in {h.doc_id for h in res.hits}


def test_faq_override_wins(docs: Path, kb: tuple[ChromaStore, CachedEmbedder]) -> None:
    entry = FaqEntry(id="x", questions=("办居住证要带什么",), answer="管理员改过的答案：带身份证和租房合同。",
                     doc="residence-permit", section="所需材料")
    svc = _service(docs, kb, faq=[entry])
    answer = svc.ask("请问办居住证要带什么？")
    assert answer.mode == "faq" and "管理员改过的答案" in answer.text
    assert answer.citations[0].title == "居住证办理指南"
    assert svc.ask("居住证多久签注一次").mode == "offline"


def test_a_question_is_embedded_once_for_faq_and_retrieval(tmp_path: Path) -> None:
    counting = CountingHashEmbedder()
    emb = CachedEmbedder(counting, tmp_path / "cache.sqlite")
    first = emb.embed_query("办居住证要带什么")
    assert emb.embed_query("办居住证要带什么") == first and counting.calls == 1
    emb.embed_query("高龄津贴怎么申请")
    assert counting.calls == 2


def test_a_question_the_lexicon_expands_takes_one_model_pass(ai: SharedAI, monkeypatch: pytest.MonkeyPatch) -> None:
    """The FAQ's dense stage compares the text the search embeds (the official terms added), so a resident's
    question with an everyday word runs the model once, not once as typed and once expanded (offline ask p95)."""
    svc = ai.knowledge
    cached = svc.retriever.embedder
    model = cached.inner
    seen: list[str] = []

    class Spy:
        name, dim = model.name, model.dim

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return model.embed_documents(texts)

        def embed_query(self, text: str) -> list[float]:
            seen.append(text)
            return model.embed_query(text)

    monkeypatch.setattr(cached, "inner", Spy())
    question = "俺家新养了条狗 狗证上哪办 要带些啥"
    expanded = svc.retriever.query_text(question)
    assert expanded != question and svc.faq is not None and svc.faq.match(question) is None  # the dense stage ran
    assert seen == [expanded]
    answer = svc.ask(question, mode="offline")
    assert seen == [expanded] and answer.answered and answer.citations[0].title == "文明养犬管理"


def test_ingest_writes_chunks_in_batches_across_documents(tmp_path: Path, docs: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import knowledge.ingest as ingest_module

    class CountingStore(ChromaStore):
        upserts = 0

        def upsert(self, **kwargs: object) -> None:  # type: ignore[override]
            CountingStore.upserts += 1
            super().upsert(**kwargs)  # type: ignore[arg-type]

    emb = CachedEmbedder(HashEmbedder(), tmp_path / "cache.sqlite")
    store = CountingStore(collection="kb-batch", chroma_dir=tmp_path / "c1")
    report = ingest_path(docs, store=store, embedder=emb)
    assert CountingStore.upserts == 1 and store.count() == report.chunks_written > 2  # both documents, one write

    monkeypatch.setattr(ingest_module, "WRITE_BATCH", 1)
    CountingStore.upserts = 0
    small = CountingStore(collection="kb-batch", chroma_dir=tmp_path / "c2")
    assert ingest_path(docs, store=small, embedder=emb).chunks_written == report.chunks_written
    assert CountingStore.upserts == 2 and small.count() == report.chunks_written
    (docs / "heating.md").write_text(HEATING.replace("18℃", "20℃"), encoding="utf-8")
    again = ingest_path(docs, store=small, embedder=emb)
    assert again.updated == ["heating"] and small.count() == report.chunks_written


def test_an_answer_about_another_city_says_the_rules_are_local(docs: Path,
                                                               kb: tuple[ChromaStore, CachedEmbedder]) -> None:
    svc = _service(docs, kb)
    other = svc.ask("北京的居住证多久签注一次")
    assert other.answered and other.text.startswith("提醒：") and "没有北京的内容" in other.text
    assert "签注" in other.text and other.citations
    assert not svc.ask("居住证多久签注一次").text.startswith("提醒：")


def test_unknown_places_ignores_the_knowledge_bases_own_city() -> None:
    from knowledge.places import unknown_places

    corpus = "济南市居住证办理指南"
    assert unknown_places("青岛和上海的低保多少", corpus) == ["青岛", "上海"]
    assert unknown_places("济南的低保多少", corpus) == []
    assert unknown_places("内蒙古的暖气费", corpus) == ["内蒙古"]


def test_an_asked_fee_is_looked_for_across_the_document_or_its_absence_said(
        docs: Path, kb: tuple[ChromaStore, CachedEmbedder]) -> None:
    from knowledge.answers import GAP_TEXT

    sections = "".join(f"\n## 补领材料说明{n}\n\n居住证丢失补领要带身份证和居住证明材料，材料齐全当场受理（{n}）。\n"
                       for n in range(6))
    (docs / "residence-permit.md").write_text(
        PERMIT + sections + "\n## 工本费\n\n补领的每张收取工本费20元（示意）。\n", encoding="utf-8")
    svc = _service(docs, kb)
    question = "居住证丢了补领要带啥材料，补领多少钱"
    hits = svc.retriever.search(question, k=5).hits
    assert "工本费" not in {h.chunk.metadata.get("section") for h in hits}  # the fee is not among the hits...
    fee = svc.ask(question)  # ...but the answer finds it in the rest of the document
    assert fee.answered and "20元" in fee.text and "提示：" not in fee.text
    none = svc.ask("暖气室温不达标，暖气费多少钱")
    assert none.answered and none.text.endswith(GAP_TEXT.format(what="费用"))
    assert "来源" in none.text.split("提示：")[0]  # the note comes after the sources: it is not a claim


def test_asked_kinds_and_what_a_text_gives() -> None:
    from knowledge.asks import asked_kinds, missing_kinds

    assert [a.name for a in asked_kinds("低保一个月给多少，去哪申请")] == ["费用", "地点"]
    assert missing_kinds("低保一个月给多少，去哪申请", "每人每月800元（示意），向街道办事处申请") == []
    assert missing_kinds("热线电话多少", "请拨打供热单位客服电话报修") == ["电话"]
    assert missing_kinds("几点能施工", "工作日8:00至12:00可以施工") == []
    assert asked_kinds("居住证咋办") == []


def test_a_topic_other_offices_handle_is_not_answered_from_a_document_that_never_names_it(
        docs: Path, kb: tuple[ChromaStore, CachedEmbedder]) -> None:
    """policies/elsewhere.yaml: 公积金 asked beside 居住证 words gets where to go, not the 居住证 materials; a
    document that does say the word still answers; a picked document (a clarification's button) always does."""
    from policies.models import Elsewhere, ElsewhereTopic

    (docs / "heating.md").write_text(HEATING + "\n## 缴费\n\n供暖费不能用住房公积金支付，请到供热单位窗口缴纳。\n",
                                     encoding="utf-8")
    svc = _service(docs, kb)
    question = "居住证所需材料 能用公积金证明住所吗"
    assert svc.ask(question).answered  # without the list, the nearest document answers
    fund = ElsewhereTopic(name="住房公积金", words=["公积金"], where="住房公积金中心（12329）")
    svc.elsewhere = Elsewhere(topics=[fund])
    away = svc.ask(question)
    assert not away.answered and away.elsewhere == "住房公积金" and not away.citations
    assert "住房公积金中心（12329）" in away.text and "12345" in away.text
    assert away.to_public()["elsewhere"] == "住房公积金"
    kept = svc.ask("供暖费能用公积金交吗")
    assert kept.answered and kept.citations[0].doc_id == "heating"
    assert svc.ask_in(question, "residence-permit").answered
    assert svc.ask("居住证所需材料有哪些").answered and not svc.ask("居住证所需材料有哪些").elsewhere


def test_elsewhere_words_need_their_companion_word_and_two_characters() -> None:
    from pydantic import ValidationError

    from policies.loader import load_policies
    from policies.models import Elsewhere, ElsewhereTopic

    bank = ElsewhereTopic(name="银行卡", words=["银行卡"], with_any=["丢", "挂失"], where="开户银行")
    el = Elsewhere(topics=[bank])
    assert el.named("银行卡叫俺弄丢了") and not el.named("高龄津贴打到银行卡上吗")
    with pytest.raises(ValidationError):
        ElsewhereTopic(name="x", words=["卡"], where="y")
    shipped = load_policies().elsewhere
    assert shipped.named("护照丢了咋补") and not shipped.named("封阳台算不算违章建筑")
