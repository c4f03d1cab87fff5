"""Chinese word segmentation (jieba) for indexing and questions, with jieba's dictionary and the indexed texts'
tokens kept on disk.

jieba loads its whole dictionary (about 500,000 entries, ~0.55 s) before its first cut, in every process. A
question needs only the entries for its own substrings, so `Segmenter(cache_dir)` keeps the dictionary as an
indexed SQLite table (built once from jieba's own dictionary file, about 2 s) and reads entries as a cut asks for
them; the search-mode tokens of indexed texts are kept in the same file by the text's hash, so a restart cuts no
chunk again. The cut itself is jieba's, over the same entries, so the tokens are the same as jieba's default
tokenizer gives (tests/test_knowledge_segmenter.py checks this). `Segmenter()` without a directory is jieba's
default tokenizer, loaded whole on first use, as before.
Owns: `Segmenter`. Must not: store residents' words (questions are cut, never kept) or filter tokens
(knowledge.retrieval decides which carry a topic). jieba's user dictionaries (`jieba.load_userdict`) are not
seen by a cached segmenter: we use none.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MEMO_LIMIT = 500_000  # dictionary look-ups kept in memory (entries and misses) before the memo starts again


class _Entries:
    """jieba's `FREQ` mapping (word or word prefix -> frequency, 0 for a bare prefix), read from SQLite on demand.

    jieba only calls `in`, `[]` and `get` on it."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock
        self._memo: dict[str, int | None] = {}

    def _look(self, word: str) -> int | None:
        try:
            return self._memo[word]
        except KeyError:
            pass
        with self._lock:
            row = self._db.execute("SELECT freq FROM entries WHERE word = ?", (word,)).fetchone()
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.clear()
        value = None if row is None else int(row[0])
        self._memo[word] = value
        return value

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self._look(word) is not None

    def __getitem__(self, word: str) -> int:
        value = self._look(word)
        if value is None:
            raise KeyError(word)
        return value

    def get(self, word: str, default: int | None = None) -> int | None:
        value = self._look(word)
        return default if value is None else value


class Segmenter:
    """jieba's precise and search-mode cuts; with `cache_dir`, its dictionary and indexed texts' tokens on disk."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self._cache_dir = cache_dir
        self.cuts = 0  # indexed texts cut (not read back from disk)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._jieba: Any = None  # a jieba.Tokenizer, made on first cut

    def _tokenizer(self) -> Any:
        if self._jieba is None:
            with self._lock:
                if self._jieba is None:
                    self._jieba = self._build()
        return self._jieba

    def _build(self) -> Any:
        import jieba

        if self._cache_dir is None:
            return jieba.dt  # jieba's own default tokenizer: the whole dictionary in memory
        dict_file = Path(jieba.__file__).resolve().parent / "dict.txt"
        path = self._cache_dir / f"jieba-{jieba.__version__}-{dict_file.stat().st_size}.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS entries (word TEXT PRIMARY KEY, freq INTEGER NOT NULL) WITHOUT ROWID")
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS tokens (key TEXT PRIMARY KEY, tokens TEXT NOT NULL) WITHOUT ROWID")
        row = db.execute("SELECT value FROM meta WHERE key = 'total'").fetchone()
        if row is None:  # first use: copy jieba's dictionary in, in one transaction (a crash leaves no half table)
            freq, total = jieba.Tokenizer.gen_pfdict(jieba.get_dict_file())
            with db:
                db.execute("DELETE FROM entries")
                db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?)", freq.items())
                db.execute("INSERT OR REPLACE INTO meta VALUES ('total', ?)", (str(total),))
            row = (str(total),)
        tokenizer = jieba.Tokenizer()
        tokenizer.FREQ = _Entries(db, self._lock)
        tokenizer.total = int(row[0])
        tokenizer.initialized = True  # jieba would otherwise load the whole dictionary into FREQ
        self._db = db
        return tokenizer

    def cut(self, text: str) -> list[str]:
        """jieba's precise mode (`jieba.lcut`)."""
        return list(self._tokenizer().lcut(text))

    def cut_for_search(self, text: str) -> list[str]:
        """jieba's search mode (`jieba.lcut_for_search`): also the shorter words inside long ones."""
        return list(self._tokenizer().lcut_for_search(text))

    def cut_indexed(self, texts: Iterable[str]) -> list[list[str]]:
        """Search-mode tokens of indexed texts (documents, never residents' words), kept on disk by hash."""
        texts = list(texts)
        tokenizer = self._tokenizer()
        if self._db is None:
            self.cuts += len(texts)
            return [list(tokenizer.lcut_for_search(t)) for t in texts]
        keys = [hashlib.sha256(t.encode()).hexdigest()[:32] for t in texts]
        found: dict[str, list[str]] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                rows = self._db.execute(f"SELECT key, tokens FROM tokens WHERE key IN ({','.join('?' * len(part))})",
                                        part).fetchall()
                found.update((k, json.loads(v)) for k, v in rows)
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}
        if missing:
            cut = {k: list(tokenizer.lcut_for_search(t)) for k, t in missing.items()}
            self.cuts += len(cut)
            with self._lock, self._db:
                self._db.executemany("INSERT OR REPLACE INTO tokens VALUES (?, ?)",
                                     [(k, json.dumps(v, ensure_ascii=False)) for k, v in cut.items()])
            found.update(cut)
        return [found[k] for k in keys]
