"""A persistent translation cache on disk: one SQLite file, safe for concurrent writers.

Written by hand because neither ``transformers`` nor ``datasets`` caches generation results
per input text (``datasets`` caches whole ``map`` results by fingerprint, so one new example
re-translates the whole split). Why SQLite in WAL mode rather than one file per entry:

* **Concurrent writers** (two processes augmenting with the same models, e.g. two runs or
  data-loader workers): SQLite serialises writers with its own file lock; ``busy_timeout``
  makes a writer wait for the lock instead of failing.
* **Killed writers**: each batch of entries is one transaction. A process killed mid-write
  leaves an uncommitted WAL tail that SQLite discards on the next open, so an entry is either
  complete or absent, never half written. (Atomic per-entry files would give the same, at
  the cost of one file, one ``fsync`` and one rename per sentence.)
* **Readers never block writers** in WAL mode, and one file of many small rows is far
  smaller on disk than thousands of tiny files.

Keys are SHA-256 digests of (model fingerprint, decoding settings, seed, text); values the
JSON list of outputs. Not thread-safe per instance: each process (or thread) opens its own.

Cost: a lookup is tens of microseconds; a committed batch of writes about a millisecond.

Example:
    >>> cache = TranslationCache(tmp_path / "translations.sqlite")  # doctest: +SKIP
    >>> cache.put_many({"k": ["Hallo."]}); cache.get_many(["k", "x"])  # doctest: +SKIP
    {'k': ['Hallo.']}
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from augreg import AugregError

__all__ = ["TranslationCache", "cache_key"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS translations (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_CHUNK = 500  # SQLite limits the number of parameters of one statement


def cache_key(*parts: Any) -> str:
    """A stable digest of JSON-serialisable parts (model, settings, seed, text)."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class TranslationCache:
    """Key -> list of translations, in one SQLite file (WAL mode; see the module docstring).

    Args:
        path: The database file; its folder is created.
        timeout: Seconds a writer waits for another process's lock before failing.

    Raises:
        AugregError: the file cannot be opened or is not a cache database.
    """

    def __init__(self, path: str | Path, timeout: float = 60.0) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
            self._open(timeout)
        except sqlite3.Error as exc:
            raise AugregError(
                f"augreg-backtranslation: cannot open the translation cache {self.path} "
                f"({exc}). Delete the file to start an empty cache, or set cache_dir to a "
                "writable folder (or cache = false)."
            ) from None

    def _open(self, timeout: float) -> None:
        """Switch to WAL and create the table, retrying while another process holds a lock.

        SQLite does not call its busy handler for a ``journal_mode`` change, so two processes
        opening a new cache at the same moment can get "database is locked" at once; the
        switch and the schema are retried with a short back-off until ``timeout``.
        """
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                mode = self._db.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                # NORMAL: a committed transaction survives a killed process (not a power
                # cut), and writes stay fast
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                locked = "locked" in str(exc) or "busy" in str(exc)
                if not locked or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def get_many(self, keys: Sequence[str]) -> dict[str, list[str]]:
        """The cached entries among ``keys`` (missing keys are absent from the result)."""
        found: dict[str, list[str]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, value FROM translations WHERE key IN ({marks})", chunk
            )
            for key, value in rows:
                found[key] = json.loads(value)
        return found

    def put_many(self, entries: Mapping[str, Sequence[str]]) -> None:
        """Store entries in one transaction (all or nothing); existing keys are kept."""
        if not entries:
            return
        rows: Iterable[tuple[str, str]] = (
            (k, json.dumps(list(v), ensure_ascii=False)) for k, v in entries.items()
        )
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO translations (key, value) VALUES (?, ?)", rows
            )

    def _transaction(self) -> Any:
        db = self._db

        class _Tx:
            def __enter__(self) -> None:
                db.execute("BEGIN IMMEDIATE")  # take the write lock now, wait if busy

            def __exit__(self, kind: object, *rest: object) -> None:
                db.execute("ROLLBACK" if kind is not None else "COMMIT")

        return _Tx()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM translations").fetchone()[0])

    def close(self) -> None:
        """Close the connection (also done when the object is collected)."""
        self._db.close()
