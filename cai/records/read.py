"""Reading what cai reads: UTF-8 text, and JSONL decoded strictly, every error naming the
file and the line."""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cai.errors import InputError
from cai.records.append import repair


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
