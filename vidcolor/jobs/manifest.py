"""The batch's manifest, OUTDIR/vidcolor-batch.sqlite, and the lock on its folder.

The manifest is written only by the driver and only in SQLite transactions, so it is consistent
whenever the driver stops, SIGKILL included. Each input is pending, running, done (with the output's
size, sha256 and frame count) or failed (with the one-line error); a film cut into segments has a
row per segment too. A done output is trusted again only while its checksum still matches.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import sqlite3
import time

from vidcolor.errors import OutputError
from vidcolor.jobs.plan import Item
from vidcolor.atomic import sha256_file

MANIFEST = "vidcolor-batch.sqlite"
LOCK = ".vidcolor-batch.lock"
STATES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    input TEXT PRIMARY KEY,
    output TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    frames INTEGER, sha256 TEXT, size INTEGER, seconds REAL,
    error TEXT,
    warning TEXT,                         -- damage in a done input: frames lost in the middle
    source TEXT,                          -- the input's size and mtime when it was colorized
    segments INTEGER NOT NULL DEFAULT 1,  -- segments asked for when this file was planned
    runs INTEGER NOT NULL DEFAULT 0,      -- times it was handed to a worker
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    input TEXT NOT NULL REFERENCES files (input),
    idx INTEGER NOT NULL,
    start REAL, end REAL,                 -- the engine's window (seconds); NULL: the film's start / end
    expected INTEGER NOT NULL,            -- frames in the window by the packets' timestamps
    path TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    frames INTEGER, sha256 TEXT, size INTEGER, seconds REAL, error TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (input, idx)
);
"""


class Manifest:
    """OUTDIR/vidcolor-batch.sqlite; every change is one committed transaction."""

    #: seconds to wait for another process's lock on the manifest
    LOCK_WAIT = 30.0

    def __init__(self, path: pathlib.Path):
        self.path = path
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None, timeout=self.LOCK_WAIT)
            self.db.row_factory = sqlite3.Row
            self.db.executescript(_SCHEMA)
            if "warning" not in {r[1] for r in self.db.execute("PRAGMA table_info(files)")}:  # older manifests
                self.db.execute("ALTER TABLE files ADD COLUMN warning TEXT")
            # A damaged page is found now, not as a traceback from a later query.
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError("damaged: " + " ".join(check.split()))
            self.settings()
        except sqlite3.DatabaseError as exc:
            if "locked" in str(exc):  # OperationalError: another process holds it
                raise OutputError(f"{path}: the batch manifest is in use by another process ({exc}); wait for "
                                  "it to finish, or choose another -o") from None
            raise OutputError(f"{path}: the batch manifest cannot be read ({exc}); remove it to start the batch "
                              "afresh (finished outputs are then redone), or choose another -o") from None

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def tx(self):
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                # SQLite has already rolled back after some errors (disk full): rolling back again
                # would replace the real reason with "cannot rollback - no transaction is active".
                if self.db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise OutputError(f"{self.path}: the batch manifest cannot be written ({exc}); "
                              "what is marked done in it is kept") from None

    def settings(self) -> dict | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        if row is None:
            return None
        try:
            settings = json.loads(row[0])
        except (ValueError, TypeError):
            settings = None
        if not isinstance(settings, dict):
            raise sqlite3.DatabaseError("its settings are not a JSON object")
        return settings

    def set_settings(self, settings: dict) -> None:
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)", (json.dumps(settings, sort_keys=True),))

    def file(self, key: str):
        return self.db.execute("SELECT * FROM files WHERE input = ?", (key,)).fetchone()

    def files(self) -> list:
        return self.db.execute("SELECT * FROM files ORDER BY input").fetchall()

    def segments(self, key: str) -> list:
        return self.db.execute("SELECT * FROM segments WHERE input = ? ORDER BY idx", (key,)).fetchall()

    def add(self, item: Item) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO files (input, output, state, updated) VALUES (?, ?, 'pending', ?)",
                       (item.key, str(item.dst), time.time()))

    def set_file(self, key: str, state: str, **fields) -> None:
        assert state in STATES
        cols = {"state": state, "updated": time.time(), **fields}
        with self.tx() as db:
            db.execute(f"UPDATE files SET {', '.join(f'{c} = ?' for c in cols)} WHERE input = ?",
                       (*cols.values(), key))

    def started(self, key: str, segment: int | None, source: str | None) -> None:
        with self.tx() as db:
            if segment is not None:
                db.execute("UPDATE segments SET state = 'running', updated = ? WHERE input = ? AND idx = ?",
                           (time.time(), key, segment))
            # A file's segments count as one run of it, and do not revive a file already failed.
            db.execute("UPDATE files SET state = 'running', runs = runs + 1, source = ?, updated = ? "
                       "WHERE input = ? AND (? OR state = 'pending')", (source, time.time(), key, segment is None))

    def set_segment(self, key: str, idx: int, state: str, **fields) -> None:
        assert state in STATES
        cols = {"state": state, "updated": time.time(), **fields}
        with self.tx() as db:
            db.execute(f"UPDATE segments SET {', '.join(f'{c} = ?' for c in cols)} WHERE input = ? AND idx = ?",
                       (*cols.values(), key, idx))

    def plan(self, key: str, requested: int, segs: list, paths: list[pathlib.Path]) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM segments WHERE input = ?", (key,))
            db.executemany(
                "INSERT INTO segments (input, idx, start, end, expected, path, state, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                [(key, s.index, s.start, s.end, s.frames, str(p), time.time()) for s, p in zip(segs, paths)])
            db.execute("UPDATE files SET segments = ?, updated = ? WHERE input = ?", (requested, time.time(), key))

    def forget_segments(self, key: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM segments WHERE input = ?", (key,))

    def interrupted(self) -> None:
        """Whatever was running goes back to pending (its temporary output was removed)."""
        with self.tx() as db:
            db.execute("UPDATE files SET state = 'pending', updated = ? WHERE state = 'running'", (time.time(),))
            db.execute("UPDATE segments SET state = 'pending', updated = ? WHERE state = 'running'", (time.time(),))


def still_valid(path, sha256: str | None, size: int | None) -> bool:
    """The finished output is still there, whole and unchanged."""
    try:
        if sha256 is None or os.path.getsize(path) != size:
            return False
        return sha256_file(path) == sha256
    except OSError:
        return False


def source_stamp(path) -> str | None:
    """The input's size and mtime: a done file whose input has changed since is colorized again."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


def take_lock(path: pathlib.Path):
    """The batch folder's lock, held open. A run that ends removes the file while holding it, so a
    lock taken on a file that has just been removed is taken again on the new one."""
    while True:
        lock = open(path, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise OutputError(f"{path.parent}: another `vidcolor batch` is writing into this folder; "
                              "wait for it or choose another -o") from None
        try:
            if os.stat(path).st_ino == os.fstat(lock.fileno()).st_ino:
                return lock
        except FileNotFoundError:
            pass
        lock.close()
