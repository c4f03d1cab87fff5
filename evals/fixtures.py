"""What several suites need to run the real product in isolation: settings for a mode, a fresh migrated case
store with the sample street, a classifier built once per process, YAML case files read with line numbers,
and log capture.

Must not: fake product behaviour (suites run the real code); be imported by the product.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from bot.understanding import load_classifier
from casestore.db import make_engine, session_scope, upgrade
from casestore.org import sync_org
from evals.core import DataProblem, read_jsonl
from policies.loader import load_policies

_classifiers: dict[tuple[str, str, bool], Any] = {}
_template_dbs: dict[str, Path] = {}


def settings_for(settings: Any, mode: str, **updates: Any) -> Any:
    """`settings` with the LLM switched off for offline mode (the product reads only Settings)."""
    if mode == "offline":
        updates.setdefault("openai_base_url", "")
    return settings.model_copy(update=updates)


def classifier_for(settings: Any, mode: str) -> Any:
    """The real MessageClassifier (offline or with the configured LLM), trained/cached once per process."""
    key = (str(settings.var_dir), str(settings.policies_dir), mode == "llm")
    if key not in _classifiers:
        _classifiers[key] = load_classifier(settings_for(settings, mode))
    return _classifiers[key]


def _template(policies_dir: Path) -> Path:
    """A migrated SQLite file with the sample street, made once per process and copied per use."""
    key = str(policies_dir)
    path = _template_dbs.get(key)
    if path is None or not path.exists():
        path = Path(tempfile.mkdtemp(prefix="quanbot-eval-template-")) / "template.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        engine = make_engine(url)
        try:
            with session_scope(engine) as session:
                sync_org(session=session, grids=load_policies(policies_dir).grids)
            with engine.connect() as conn:  # fold the WAL into the file so a plain copy is complete
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            engine.dispose()
        _template_dbs[key] = path
    return path


@contextmanager
def fresh_database(policies_dir: Path) -> Iterator[str]:
    """A database URL for a fresh, migrated case store with the sample street; deleted afterwards."""
    work = Path(tempfile.mkdtemp(prefix="quanbot-eval-"))
    try:
        target = work / "cases.db"
        shutil.copyfile(_template(policies_dir), target)
        yield f"sqlite:///{target}"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_yaml_cases(path: Path, key: str, required: tuple[str, ...],
                    problems: list[DataProblem]) -> list[tuple[int, dict[str, Any]]]:
    """The items of the list under `key` (or the top-level list) with their line numbers; a malformed file or
    item is recorded in `problems` (file and line) and skipped."""
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problems.append(DataProblem(path.name, line, f"not valid YAML: {getattr(exc, 'problem', exc)}"))
        return []
    nodes: list[Any] = []
    items: Any = data
    if isinstance(root, yaml.MappingNode) and isinstance(data, dict):
        items = data.get(key)
        for k, v in root.value:
            if k.value == key and isinstance(v, yaml.SequenceNode):
                nodes = list(v.value)
    elif isinstance(root, yaml.SequenceNode):
        nodes = list(root.value)
    if not isinstance(items, list):
        problems.append(DataProblem(path.name, 1, f"expected a list under '{key}'"))
        return []
    out = []
    for node, item in zip(nodes, items, strict=False):
        line = node.start_mark.line + 1
        if not isinstance(item, dict):
            problems.append(DataProblem(path.name, line, "not a mapping"))
            continue
        missing = [k for k in required if k not in item]
        if missing:
            problems.append(DataProblem(path.name, line, f"missing {', '.join(missing)}"))
            continue
        out.append((line, item))
    return out


def read_cases(path: Path, key: str, required: tuple[str, ...],
               problems: list[DataProblem]) -> list[tuple[int, dict[str, Any]]]:
    """YAML (`key:` list) or JSON Lines, by file extension."""
    if path.suffix in (".jsonl", ".json"):
        return list(read_jsonl(path, required, problems))
    return read_yaml_cases(path, key, required, problems)


class LogCapture(logging.Handler):
    """Keeps every formatted log record emitted while installed (root logger, all levels)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a broken log record must not break the eval
            self.lines.append(str(record.msg))


@contextmanager
def capture_logs() -> Iterator[LogCapture]:
    root = logging.getLogger()
    handler = LogCapture()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
