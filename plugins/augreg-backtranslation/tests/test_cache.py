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
