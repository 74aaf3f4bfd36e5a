"""The comparisons database: one SQLite file (WAL mode) that every worker of a primary model appends to.

Table ``comparisons``, one row per comparison (``auditor.schemas.ComparisonRecord``): the probability vectors
are JSON arrays, the models their ``name/version@digest`` label and their parts in separate columns. Texts are
stored only when the operator opts in, and then the file (with its ``-wal`` and ``-shm`` companions) is mode
0600. ``max_rows`` and ``max_age_s`` cap the table: the oldest rows are deleted as new ones arrive.

Table ``drops``: comparisons that were not made, counted by cause (``auditor.live.shadow.DROP_CAUSES``), one
row per cause and write; ``read_drops`` sums them. Sampled inputs = rows of ``comparisons`` (before the caps
deleted any) + the sum of ``drops``, except what a killed worker had in flight or could not write at all
(a database that cannot be written: those drops are counted in the TorchServe metrics only).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from auditor.errors import InputError
from auditor.schemas.live import ComparisonRecord, ServedModelRef

SCHEMA_VERSION = 1
DDL = """
CREATE TABLE IF NOT EXISTS comparisons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    primary_model TEXT NOT NULL,
    primary_name TEXT NOT NULL,
    primary_version TEXT NOT NULL,
    primary_weights_sha256 TEXT NOT NULL,
    shadow_model TEXT NOT NULL,
    shadow_name TEXT NOT NULL,
    shadow_version TEXT NOT NULL,
    shadow_weights_sha256 TEXT NOT NULL,
    primary_label TEXT NOT NULL,
    shadow_label TEXT NOT NULL,
    primary_probabilities TEXT NOT NULL,
    shadow_probabilities TEXT NOT NULL,
    input_sha256 TEXT NOT NULL,
    primary_latency_ms REAL NOT NULL,
    shadow_latency_ms REAL NOT NULL,
    text TEXT,
    text_pair TEXT
);
CREATE INDEX IF NOT EXISTS comparisons_ts ON comparisons (ts);
CREATE INDEX IF NOT EXISTS comparisons_input ON comparisons (input_sha256);
CREATE TABLE IF NOT EXISTS drops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    cause TEXT NOT NULL,
    count INTEGER NOT NULL
);
"""
COLUMNS = (
    "ts", "primary_model", "primary_name", "primary_version", "primary_weights_sha256", "shadow_model", "shadow_name",
    "shadow_version", "shadow_weights_sha256", "primary_label", "shadow_label", "primary_probabilities",
    "shadow_probabilities", "input_sha256", "primary_latency_ms", "shadow_latency_ms", "text", "text_pair",
)


def input_digest(text: str, text_pair: str | None = None) -> str:
    """SHA-256 of the canonical JSON ``{"text": …, "text_pair": …}`` of one input: the key a labels file uses."""
    canonical = json.dumps({"text": text, "text_pair": text_pair}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


class RecordStore:
    """Appends comparisons to the database at ``path``, safe while several processes write (SQLite's WAL lock;
    a writer waits up to ``timeout_s`` for another's transaction). Opening creates the file and the table.

    ``store_texts`` keeps the inputs' texts; the database files are then mode 0600. ``max_rows`` and
    ``max_age_s`` (None: no cap) bound the table: each insert deletes the rows beyond them, oldest first."""

    def __init__(
        self,
        path: Path,
        *,
        store_texts: bool = False,
        max_rows: int | None = 1_000_000,
        max_age_s: float | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.path = Path(path)
        self.store_texts = store_texts
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if store_texts:
            self.path.touch(mode=0o600, exist_ok=True)
            os.chmod(self.path, 0o600)
        self.connection = _connect(self.path, timeout_s)
        self.connection.executescript(DDL)
        self.connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        if store_texts:
            for suffix in ("-wal", "-shm"):
                companion = self.path.with_name(self.path.name + suffix)
                if companion.exists():
                    os.chmod(companion, 0o600)

    def insert(self, records: Sequence[ComparisonRecord], drops: Mapping[str, int] | None = None) -> None:
        """Writes ``records`` and the ``drops`` counted by cause in one transaction, then applies the caps."""
        rows = [self._row(record) for record in records]
        now = time.time()
        with self.connection:
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.executemany(
                f"INSERT INTO comparisons ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", rows
            )
            self.connection.executemany(
                "INSERT INTO drops (ts, cause, count) VALUES (?, ?, ?)", [(now, cause, n) for cause, n in (drops or {}).items() if n]
            )
            if self.max_age_s is not None:
                self.connection.execute("DELETE FROM comparisons WHERE ts < ?", (time.time() - self.max_age_s,))
            if self.max_rows is not None:
                self.connection.execute(
                    "DELETE FROM comparisons WHERE id <= (SELECT MAX(id) FROM comparisons) - ?", (self.max_rows,)
                )

    def close(self) -> None:
        self.connection.close()

    def _row(self, record: ComparisonRecord) -> tuple:
        primary, shadow = record.primary_model, record.shadow_model
        return (
            record.ts, primary.label(), primary.name, primary.version, primary.weights_sha256,
            shadow.label(), shadow.name, shadow.version, shadow.weights_sha256,
            record.primary_label, record.shadow_label,
            json.dumps(record.primary_probabilities), json.dumps(record.shadow_probabilities),
            record.input_sha256, record.primary_latency_ms, record.shadow_latency_ms,
            record.text if self.store_texts else None, record.text_pair if self.store_texts else None,
        )


def read_records(paths: Sequence[Path]) -> Iterator[ComparisonRecord]:
    """Every comparison of the databases at ``paths`` (one per server behind a load balancer), each file in
    insertion order. A missing, empty or foreign file is an ``InputError`` naming it."""
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such comparisons database")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file, not a comparisons database")
        try:
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                names = {row[1] for row in connection.execute("PRAGMA table_info(comparisons)")}
                if not set(COLUMNS) <= names:
                    raise InputError(f"{path}: not a comparisons database (no table 'comparisons' with its columns)")
                query = f"SELECT {', '.join(COLUMNS)} FROM comparisons ORDER BY id"
                for row in connection.execute(query):
                    yield _record(dict(zip(COLUMNS, row)))
            finally:
                connection.close()
        except sqlite3.DatabaseError as error:
            raise InputError(f"{path}: not a comparisons database ({error})") from None


def read_drops(paths: Sequence[Path]) -> dict[str, int]:
    """The comparisons not made, summed by cause over the databases at ``paths`` (InputError as ``read_records``;
    a database written before the ``drops`` table existed has none)."""
    totals: dict[str, int] = {}
    for path in paths:
        records = read_records([path])
        next(records, None)  # the same checks, with the same messages
        records.close()
        connection = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
        try:
            if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'drops'").fetchone():
                for cause, count in connection.execute("SELECT cause, SUM(count) FROM drops GROUP BY cause"):
                    totals[cause] = totals.get(cause, 0) + int(count)
        finally:
            connection.close()
    return totals


def _record(row: dict) -> ComparisonRecord:
    return ComparisonRecord(
        ts=row["ts"],
        primary_model=ServedModelRef(
            name=row["primary_name"], version=row["primary_version"], weights_sha256=row["primary_weights_sha256"]
        ),
        shadow_model=ServedModelRef(
            name=row["shadow_name"], version=row["shadow_version"], weights_sha256=row["shadow_weights_sha256"]
        ),
        primary_label=row["primary_label"],
        shadow_label=row["shadow_label"],
        primary_probabilities=json.loads(row["primary_probabilities"]),
        shadow_probabilities=json.loads(row["shadow_probabilities"]),
        input_sha256=row["input_sha256"],
        primary_latency_ms=row["primary_latency_ms"],
        shadow_latency_ms=row["shadow_latency_ms"],
        text=row["text"],
        text_pair=row["text_pair"],
    )

