"""Append-only JSON-lines checkpoint of finished work, so an interrupted audit or mining run resumes where it
stopped.

The first line records what the results belong to (a digest of the settings, model and data); every
further line is one finished record ``{"key": ..., "value": ...}``, written with a single ``write`` of the
whole line, flushed and fsync'ed before the next item starts. A line cut short by a crash is dropped (and
the file truncated to its last complete line) when the checkpoint is opened again; a checkpoint written for
other settings is refused rather than mixed in. The header is written with the first record, and a
checkpoint holding no record yet is simply replaced, so a run that failed before finishing anything
never blocks a retry with other settings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from auditor.errors import InputError


class Checkpoint:
    def __init__(self, path: Path, identity: dict[str, Any]) -> None:
        self.path = path
        self.identity = identity
        self.records: dict[str, Any] = {}
        self._started = False
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]
        lines = complete.decode("utf-8").splitlines()
        header = json.loads(lines[0]) if lines else None
        if header is None or len(lines) == 1:  # nothing finished: start afresh
            self.path.unlink()
            return
        if header.get("checkpoint") != self.identity:
            raise InputError(
                f"{self.path} holds results of a different run (other model, data or settings); "
                "use another --out or delete the checkpoint"
            )
        for line in lines[1:]:
            record = json.loads(line)
            self.records[record["key"]] = record["value"]
        self._started = True
        if len(complete) != len(raw):
            with self.path.open("r+b") as handle:
                handle.truncate(len(complete))

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __getitem__(self, key: str) -> Any:
        return self.records[key]

    def put(self, key: str, value: Any) -> None:
        if not self._started:
            self._append({"checkpoint": self.identity})
            self._started = True
        self._append({"key": key, "value": value})
        self.records[key] = value

    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        with self.path.open("ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
