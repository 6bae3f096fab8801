"""Appending JSON Lines: one record a line, written and flushed as each finishes.

A run killed at any moment leaves at most one partial last line per file; opening the file
again cuts it off, so every file is whole lines of JSON and a rerun can skip the ids it holds.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class JsonlWriter:
    """Appends records to a JSONL file, one flushed line each."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair(self.path)
        self._file = self.path.open("ab", buffering=0)  # unbuffered: each line is on disk

    def write(self, record: dict[str, Any]) -> None:
        # One write call per line: a kill leaves a partial line at worst, never two merged.
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        size = self._file.tell()
        try:
            if self._file.write(data) != len(data):  # the disk filled part-way through
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:  # a full disk: cut the part of the line that went, then say so
            self._file.truncate(size)
            raise OSError(e.errno, e.strerror, str(self.path)) from None

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def append_shared(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records to a JSONL file that other processes append to at the same time (the
    processes of one `accelerate launch`): one write under an exclusive lock, so that their
    lines never interleave."""
    import fcntl

    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.write(text)
            f.flush()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
