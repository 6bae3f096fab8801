"""JSON Lines output: one record a line, appended and flushed as each finishes.

A run killed at any moment leaves at most one partial last line per file; opening the file
again cuts it off, so every file is whole lines of JSON and a rerun can skip the ids it holds.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cai.chat import Message, messages_from_dicts
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


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file; a bad line is an error naming the file and line."""
    for _, record in numbered_jsonl(path):
        yield record


def read_text(path: str | Path) -> str:
    """A text file that must be UTF-8; if it is not, the error names the line and byte."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, None, "file not found") from None
    except OSError as e:
        raise InputError(path, None, f"cannot read the file ({e.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(path, line, f"not UTF-8 text: byte 0x{data[e.start]:02x} at byte "
                         f"offset {e.start}; save the file as UTF-8 (e.g. `iconv -f latin1 "
                         f"-t utf-8`)") from None


def numbered_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line of a JSONL file, counting every line."""
    path = Path(path)
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(path, line_no, f"not valid JSON ({e.msg}); fix or remove "
                             "that line") from None
        if not isinstance(record, dict):
            raise InputError(path, line_no, 'each line must be an object such as '
                             '{"prompt": "..."}')
        yield line_no, record


def done_ids(path: str | Path) -> set[str]:
    """The ids of the records a file already holds, for resuming."""
    path = Path(path)
    if not path.exists():
        return set()
    repair(path)
    return {r["id"] for r in read_jsonl(path) if "id" in r}


def assistant(text: str) -> list[dict[str, str]]:
    """A reply in TRL's conversational form: `[{"role": "assistant", "content": text}]`."""
    return [{"role": "assistant", "content": text}]


def prompt_hash(prompt: Any) -> str:
    """The sha256 of a prompt's content (TRL messages, or text): the same prompt, the same hash,
    whatever the file order. Prompt ids are its first 16 characters."""
    blob = json.dumps(prompt, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


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
    _replace(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def write_json(path: str | Path, data: Any) -> None:
    """Write a JSON file atomically, so a kill never leaves half a summary."""
    _replace(Path(path), json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _replace(path: Path, text: str) -> None:
    """Write through a temporary file renamed over the target: a kill leaves old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def conversation_of(prompt: Any) -> tuple[Message, ...]:
    if isinstance(prompt, str):
        return (Message("user", prompt),)
    return tuple(messages_from_dicts(prompt))


def reply_text(value: Any) -> str:
    """A response given as text or as TRL's conversational `[{"role": "assistant", ...}]`."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1]["content"])
    raise ValueError(f"a response must be text or a list of messages, not {value!r:.60}")
