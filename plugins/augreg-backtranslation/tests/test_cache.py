"""The translation cache under two concurrent writer processes and a killed writer."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from augreg import AugregError
from augreg_backtranslation.cache import TranslationCache

# Each process writes entries key -> [value(key)] in transactions of BATCH entries.
_WRITER = textwrap.dedent(
    """
    import sys
    from augreg_backtranslation.cache import TranslationCache
    path, start, stop, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    cache = TranslationCache(path)
    for lo in range(start, stop, batch):
        keys = range(lo, min(lo + batch, stop))
        cache.put_many({f"k{i}": [f"v{i}-" + "x" * 2000, f"w{i}"] for i in keys})
        print(lo, flush=True)
    """
)


def _writer(path: Path, start: int, stop: int, batch: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(start), str(stop), str(batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _check_entries(path: Path) -> dict[str, list[str]]:
    db = sqlite3.connect(str(path))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    cache = TranslationCache(path)
    keys = [f"k{i}" for i in range(100_000)]
    found = cache.get_many(keys)
    for key, value in found.items():
        i = key[1:]
        assert value == [f"v{i}-" + "x" * 2000, f"w{i}"], f"entry {key} is corrupt"
    return found


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "translations.sqlite"
    # overlapping key ranges, small transactions: the writers interleave and contend
    a, b = _writer(path, 0, 1500, 50), _writer(path, 1000, 2500, 50)
    for proc in (a, b):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    found = _check_entries(path)
    assert set(found) == {f"k{i}" for i in range(2500)}


def test_killed_writer_leaves_no_partial_entry(tmp_path: Path) -> None:
    path = tmp_path / "translations.sqlite"
    batch = 400
    proc = _writer(path, 0, 100_000, batch)
    assert proc.stdout is not None
    for _ in range(3):  # let it commit a few transactions, then kill it mid-way
        proc.stdout.readline()
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    found = _check_entries(path)
    # all or nothing per transaction: whole batches only, and at least those reported
    assert len(found) >= 3 * batch and len(found) % batch == 0
    assert len(found) < 100_000
    # the cache stays writable after the kill
    cache = TranslationCache(path)
    cache.put_many({"after": ["ok"]})
    assert cache.get_many(["after"]) == {"after": ["ok"]}


def test_opening_waits_for_a_reader_of_a_new_cache(tmp_path: Path) -> None:
    """The switch to WAL needs every other connection to let go; SQLite does not wait by itself.

    This is the race of two processes opening a new cache at once, made deterministic: a
    second connection holds a read transaction on the (not yet WAL) file for a moment.
    """
    import threading

    path = tmp_path / "translations.sqlite"
    other = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE IF NOT EXISTS translations (key TEXT PRIMARY KEY, value TEXT)")
    other.execute("BEGIN")
    other.execute("SELECT COUNT(*) FROM translations").fetchone()  # holds a shared lock
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        cache = TranslationCache(path, timeout=10)
        cache.put_many({"k": ["v"]})
        assert cache.get_many(["k"]) == {"k": ["v"]}
        assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        release.join()
        other.close()


def test_opening_retries_when_two_processes_switch_to_wal_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two connections switching a new file to WAL at the same moment: SQLite answers one of
    them "database is locked" at once, without its busy handler (it would deadlock). The race
    is too narrow to hit on demand, so the answer is injected on the first two attempts."""
    import augreg_backtranslation.cache as cache_module

    real_connect = sqlite3.connect
    attempts = {"n": 0}

    class Racing:
        def __init__(self, db: sqlite3.Connection) -> None:
            self._db = db

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if sql == "PRAGMA journal_mode=WAL" and attempts["n"] < 2:
                attempts["n"] += 1
                raise sqlite3.OperationalError("database is locked")
            return self._db.execute(sql, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(self._db, name)

    monkeypatch.setattr(
        cache_module.sqlite3, "connect", lambda *a, **k: Racing(real_connect(*a, **k))
    )
    cache = TranslationCache(tmp_path / "translations.sqlite", timeout=10)
    assert attempts["n"] == 2
    cache.put_many({"k": ["v"]})
    assert cache.get_many(["k"]) == {"k": ["v"]}
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_opening_gives_up_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import augreg_backtranslation.cache as cache_module

    real_connect = sqlite3.connect

    class Locked:
        def __init__(self, db: sqlite3.Connection) -> None:
            self._db = db

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if sql == "PRAGMA journal_mode=WAL":
                raise sqlite3.OperationalError("database is locked")
            return self._db.execute(sql, *args)

    monkeypatch.setattr(
        cache_module.sqlite3, "connect", lambda *a, **k: Locked(real_connect(*a, **k))
    )
    with pytest.raises(AugregError, match="database is locked"):
        TranslationCache(tmp_path / "translations.sqlite", timeout=0.2)
