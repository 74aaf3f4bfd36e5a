"""Labels that arrive after the requests: a CSV file with the header ``input_sha256,label``, one row per input,
``input_sha256`` the key ``auditor.live.records.input_digest`` computes and ``label`` the class name as
``/predictions`` returns it."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from auditor.errors import InputError

HEADER = ["input_sha256", "label"]
DIGEST = re.compile(r"[0-9a-f]{64}")


def read_labels(path: Path) -> dict[str, str]:
    """``{input_sha256: label}`` from the labels file at ``path``; InputError naming the file (and the line) when
    it is missing, has another header, a malformed digest, an empty label or one input labelled twice
    differently."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()  # a spreadsheet may start it with a BOM
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the labels file ({getattr(error, 'strerror', None) or error})") from None
    rows = list(csv.reader(lines))
    if not rows or [cell.strip() for cell in rows[0]] != HEADER:
        raise InputError(f"{path}: a labels file is CSV with the header 'input_sha256,label'")
    labels: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            raise InputError(f"{path}, line {number}: expected 2 fields (input_sha256,label), found {len(row)}")
        digest, label = row[0].strip().lower(), row[1].strip()
        if not DIGEST.fullmatch(digest):
            raise InputError(f"{path}, line {number}: {row[0]!r} is not a SHA-256 (64 hex digits)")
        if not label:
            raise InputError(f"{path}, line {number}: empty label")
        if labels.setdefault(digest, label) != label:
            raise InputError(f"{path}, line {number}: input {digest[:12]}… is labelled both {labels[digest]!r} and {label!r}")
    if not labels:
        raise InputError(f"{path}: the labels file has no labels")
    return labels
