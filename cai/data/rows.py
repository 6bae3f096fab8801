"""Rows of a prompt file or a record file, whatever their format, with the text to compare.

JSONL (prompt files and TRL records alike), CSV with a column of that name, or plain text
with one row a line. The text of a field is the field itself when it is a string, or the
contents of its messages when it is a conversation (TRL's `prompt`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai.errors import InputError
from cai.records.read import numbered_jsonl, read_text, text_lines
from cai.schema import ID, PROMPT, kind, numbered_csv


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
        raw = list(numbered_csv(path, [field], "pick one with --field"))
    else:
        raw = [(n, {field: t.strip()}) for n, t in enumerate(text_lines(read_text(path)), 1)
               if t.strip()]
    rows = [Row(line, _id(path, line, r), _text(path, line, r, field), r) for line, r in raw]
    if not rows:
        raise InputError(path, None, "no rows in the file")
    return rows


def _id(path: Path, line: int, record: dict[str, Any]) -> str:
    value = record.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int, type(None))):
        raise InputError(path, line, f"id: expected {ID}, found {kind(value)}; fix that id")
    return str(value or f"line-{line}")


def _text(path: Path, line: int, record: dict[str, Any], field: str) -> str:
    value = record.get(field)
    if value is None and field == "prompt" and "messages" in record:
        field, value = "messages", record["messages"]
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(
            isinstance(m, dict) and isinstance(m.get("content"), str) for m in value):
        return "\n".join(m["content"] for m in value)
    if value is None:
        keys = ", ".join(record) or "none"
        raise InputError(path, line, f"no '{field}' text (keys found: {keys}); pick the field "
                         "to compare with --field")
    raise InputError(path, line, f"{field}: expected {PROMPT}, found {kind(value)}; pick the "
                     "field to compare with --field")
