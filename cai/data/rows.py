"""Rows of a prompt file or a record file, whatever their format, with the text to compare.

JSONL (prompt files and TRL records alike), CSV with a column of that name, or plain text
with one row a line. The text of a field is the field itself when it is a string, or the
contents of its messages when it is a conversation (TRL's `prompt`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai.errors import InputError
from cai.records import numbered_jsonl, read_text


@dataclass(frozen=True)
class Row:
    line: int
    id: str
    text: str
    record: dict[str, Any]  # the row as read, written out again as it was


def read_rows(path: str | Path, field: str = "prompt") -> list[Row]:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        raw = list(numbered_jsonl(path))
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
        if not reader.fieldnames or field not in reader.fieldnames:
            raise InputError(path, 1, f"no '{field}' column (columns: "
                             f"{', '.join(reader.fieldnames or [])}); pick one with --field")
        raw = [(n + 2, dict(r)) for n, r in enumerate(reader)]
    else:
        raw = [(n, {field: t.strip()}) for n, t in enumerate(read_text(path).splitlines(), 1)
               if t.strip()]
    rows = [Row(line, str(r.get("id") or f"line-{line}"), _text(path, line, r, field), r)
            for line, r in raw]
    if not rows:
        raise InputError(path, None, "no rows in the file")
    return rows


def _text(path: Path, line: int, record: dict[str, Any], field: str) -> str:
    value = record.get(field)
    if value is None and field == "prompt" and "messages" in record:
        value = record["messages"]
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        return "\n".join(str(m["content"]) for m in value)
    keys = ", ".join(record) or "none"
    raise InputError(path, line, f"no '{field}' text (keys found: {keys}); pick the field to "
                     "compare with --field")
