"""JSON Lines output: one record a line, appended and flushed as each finishes.

A run killed at any moment leaves at most one partial last line per file; opening the file
again cuts it off, so every file is whole lines of JSON and a rerun can skip the ids it holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonlines

from cai.errors import InputError


class JsonlWriter:
    """Appends records to a JSONL file, one flushed line each."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair(self.path)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        # One write call per line: a kill leaves a partial line at worst, never two merged.
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def repair(path: Path) -> None:
    """Cut a partial last line, which only a killed writer leaves."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        data = path.read_bytes()
        f.truncate(data.rfind(b"\n") + 1)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file; a bad line is an error naming the file and line."""
    path = Path(path)
    try:
        with jsonlines.open(path) as reader:
            line = 0
            for line, record in enumerate(reader.iter(skip_empty=True), start=1):  # noqa: B007
                if not isinstance(record, dict):
                    raise InputError(path, line, "each line must be a JSON object {...}")
                yield record
    except jsonlines.InvalidLineError as e:
        raise InputError(path, e.lineno, f"not valid JSON ({_reason(e)}); fix or remove "
                         "that line") from None
    except FileNotFoundError:
        raise InputError(path, None, "file not found") from None


def _reason(e: jsonlines.InvalidLineError) -> str:
    cause = e.__cause__
    return str(cause).split(":")[0] if cause else "invalid line"


def done_ids(path: str | Path) -> set[str]:
    """The ids of the records a file already holds, for resuming."""
    path = Path(path)
    if not path.exists():
        return set()
    repair(path)
    return {r["id"] for r in read_jsonl(path) if "id" in r}


def keep_ids(path: Path, ids: set[str]) -> int:
    """Rewrite a file keeping only the records whose id is in `ids`; return how many went.

    Used on resume: a record group is committed when its last file is written, so lines that
    a killed run wrote to the other files for an uncommitted item are dropped and redone.
    """
    if not path.exists():
        return 0
    repair(path)
    records = list(read_jsonl(path))
    kept = [r for r in records if r.get("id") in ids]
    if len(kept) == len(records):
        return 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in kept:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return len(records) - len(kept)


def write_json(path: str | Path, data: Any) -> None:
    """Write a JSON file atomically, so a kill never leaves half a summary."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
