"""The shape every eval suite returns, and the data-file reader that reports malformed lines by number.

Suites live in evals/suites/<name>.py and expose `run(ctx: EvalContext) -> SuiteResult`.
Must not: be imported by the product (bot/, casestore/, knowledge/ never import evals).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass
class DataProblem:
    file: str
    line: int
    message: str


@dataclass
class EvalContext:
    settings: Any  # bot.settings.Settings (typed loosely: evals must not shape the product)
    data: Path | None = None
    mode: str = "offline"  # offline | llm
    quick: bool = False  # the CI gate: a fixed-seed subset
    progress: Callable[[str, int, int], None] | None = None
    # classification: the approaches compared beside the shipped one and the plain baseline (`--approaches`);
    # empty: only those two, so a run does not embed every training line for arms the product does not ship
    approaches: tuple[str, ...] = ()


@dataclass
class SuiteResult:
    name: str
    figures: dict[str, Any]  # the suite's JSON object (what --json prints for one suite)
    headline: dict[str, float] = field(default_factory=dict)  # gated figures, compared with thresholds.yaml
    failures: list[dict[str, Any]] = field(default_factory=list)  # failing cases with their inputs
    problems: list[DataProblem] = field(default_factory=list)  # malformed data lines, skipped
    extra: dict[str, Any] = field(default_factory=dict)  # charts' data for the HTML report


def compact(text: str) -> str:
    """NFKC, no whitespace, lower case: how an eval compares a fact or a heading with what the bot said."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text or "")).lower()


def read_jsonl(path: Path, required: tuple[str, ...],
               problems: list[DataProblem]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each good line; a malformed one is recorded and skipped."""
    with path.open(encoding="utf-8") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(DataProblem(path.name, number, f"not JSON: {exc.msg}"))
                continue
            if not isinstance(obj, dict):
                problems.append(DataProblem(path.name, number, "not a JSON object"))
                continue
            missing = [k for k in required if k not in obj]
            if missing:
                problems.append(DataProblem(path.name, number, f"missing {', '.join(missing)}"))
                continue
            yield number, obj
