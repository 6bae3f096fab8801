"""Whole files written at once: through a temporary file renamed over the old one, so that a
kill or a full disk leaves the old file or the new, never a part."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from secrets import token_hex
from typing import Any

from cai.records.append import repair
from cai.records.read import read_jsonl


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
    write_jsonl(path, kept)
    return len(records) - len(kept)


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Write a whole JSONL file at once, atomically replacing any earlier one."""
    write_jsonl_files({Path(path): records})


def write_jsonl_files(files: dict[Path, Iterable[dict[str, Any]]]) -> None:
    """Write several JSONL files as one: none replaces its earlier self until all are on
    disk, so that a full disk leaves every one as it was."""
    _replace({path: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
              for path, records in files.items()})


def write_json(path: str | Path, data: Any) -> None:
    """Write a JSON file atomically, so a kill never leaves half a summary."""
    _replace({Path(path): json.dumps(data, indent=2, ensure_ascii=False) + "\n"})


def _replace(texts: dict[Path, str]) -> None:
    """Write through temporary files renamed over the targets: a kill, or a full disk, leaves
    the old files or the new, never a part. Each writer has temporary files of its own, so
    that processes writing one file at once (the ranks of a launch sharing a cache) each
    replace it whole instead of renaming each other's half-written file away."""
    written: list[Path] = []
    path = next(iter(texts))
    try:
        for path, text in texts.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            written.append(path.with_name(f".{path.name}.{os.getpid()}.{token_hex(4)}.tmp"))
            written[-1].write_text(text, encoding="utf-8")
        for path, tmp in zip(texts, written, strict=True):
            os.replace(tmp, path)
    except OSError as e:
        for tmp in written:
            tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
