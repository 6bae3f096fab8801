"""JSON Lines output: one record a line, appended and flushed as each finishes.

A run killed at any moment leaves at most one partial last line per file; opening the file
again cuts it off, so every file is whole lines of JSON and a rerun can skip the ids it holds.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import json
import math
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


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file; a bad line is an error naming the file and line."""
    for _, record in numbered_jsonl(path):
        yield record


MAX_LINE = 8_000_000  # bytes; no record needs more, and a longer line is a wrong file


def read_text(path: str | Path) -> str:
    """A text file that must be UTF-8 (a BOM is dropped); if it is not, or it holds binary
    data or a line over 8 MB, the error names the line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, None, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, None, "this is a folder; give a file") from None
    except OSError as e:
        raise InputError(path, None, f"cannot read the file ({e.strerror})") from None
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(path, line, f"not UTF-8 text: byte 0x{data[e.start]:02x} at byte "
                         f"offset {e.start}; save the file as UTF-8 (e.g. `iconv -f latin1 "
                         f"-t utf-8`)") from None
    if (nul := data.find(b"\0")) >= 0:
        raise InputError(path, data.count(b"\n", 0, nul) + 1, "binary data (a NUL byte at "
                         f"byte offset {nul}), not text; give a text file")
    if len(data) > MAX_LINE:  # only then can a line be too long
        for number, chunk in enumerate(data.split(b"\n"), start=1):
            if len(chunk) > MAX_LINE:
                raise InputError(path, number, f"a line of {len(chunk):,} bytes, over the "
                                 f"{MAX_LINE:,} a record may have; is it the right file?")
    return text


def text_lines(text: str) -> list[str]:
    """The lines of a file's text, split at "\n" (a "\r" before it dropped) and nowhere else:
    str.splitlines would also split inside JSON strings that hold U+2028, U+0085 or a form
    feed, which JSON (and cai's own writer) leaves as they are."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def numbered_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line of a JSONL file, counting every line."""
    path = Path(path)
    for line_no, line in enumerate(text_lines(read_text(path)), start=1):
        if not line.strip():
            continue
        yield line_no, json_object(path, line_no, line)


def json_object(path: Path, line_no: int, line: str) -> dict[str, Any]:
    """One line of JSONL, read strictly: an object, no key twice, finite numbers only."""
    try:
        record = _DECODER.decode(line)
    except json.JSONDecodeError as e:
        raise InputError(path, line_no, f"not valid JSON ({e.msg}); fix or remove "
                         "that line") from None
    except RecursionError:
        raise InputError(path, line_no, "nested too deeply to read; fix or remove that "
                         "line") from None
    except _Refused as e:
        raise InputError(path, line_no, str(e)) from None
    except ValueError:  # Python's limit of 4,300 digits for an integer
        raise InputError(path, line_no, "a number too long to read; fix or remove that "
                         "line") from None
    if not isinstance(record, dict):
        raise InputError(path, line_no, 'each line must be an object such as '
                         '{"prompt": "..."}')
    return record


class _Refused(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) < len(pairs):
        twice = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
        raise _Refused(f"key '{twice}' appears twice in one object; keep one")
    return record


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:24]} is too large; write a finite number")
    return value


def _constant(name: str) -> float:
    raise _Refused(f"{name} is not a number JSON has; write a number or null")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_float=_number,
                            parse_constant=_constant)


STATE_FIX = "use another --out, or --overwrite to clear the folder and start again"


def read_json(path: str | Path, fix: str = STATE_FIX) -> Any:
    """A JSON file cai wrote for itself (settings.json, shard.json, a summary): one cut short
    or edited by hand is one error naming it, with the way out."""
    path = Path(path)
    try:
        return json.loads(read_text(path))
    except RecursionError:
        problem = "nested too deeply"
    except ValueError as e:
        problem = getattr(e, "msg", None) or str(e)
    except InputError as e:
        problem = e.message
    raise InputError(path, None, f"cannot be read ({problem}); cai writes this file for itself, "
                     f"and it was cut short or changed. {fix[0].upper()}{fix[1:]}")


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
    the old files or the new, never a part."""
    written: list[Path] = []
    path = next(iter(texts))
    try:
        for path, text in texts.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            written.append(path.with_suffix(path.suffix + ".tmp"))
            written[-1].write_text(text, encoding="utf-8")
        for path, tmp in zip(texts, written, strict=True):
            os.replace(tmp, path)
    except OSError as e:
        for tmp in written:
            tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None


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
