"""The rows of the JSONL and CSV files cai reads, each kind declared once with its types.

A reader checks every row against its schema (a pydantic model, strict: `"prompt": 17` is a
number, never the text "17"), and a wrong row is one error, `FILE:LINE: field: problem; fix`:

    p.jsonl:4: prompt: expected text or a list of {role, content} messages, found a number
    (17); give each line a "prompt" string or a "messages" list

Keys a schema does not declare are kept as they are: records carry their provenance beside
TRL's fields.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeAlias, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict

from cai.errors import InputError
from cai.records.read import MAX_LINE, numbered_jsonl, read_text


class Message(TypedDict):
    role: str
    content: str


def _id(value: Any) -> Any:
    """An id written as a whole number is that number's text; anything else is checked as
    text (so that a list or an object is refused)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Conversation = Annotated[list[Message], Field(min_length=1)]
# A prompt, or a reply in TRL's conversational form, `[{"role": "assistant", "content": ...}]`.
Prompt: TypeAlias = str | Conversation
Reply: TypeAlias = str | Conversation
Id = Annotated[str, BeforeValidator(_id)]
Probability = Annotated[float, Field(ge=0, le=1)]
# What each kind of field holds, in the words of an error: `prompt: expected text or ...`.
PROMPT = "text or a list of {role, content} messages"
MESSAGES = "a list of {role, content} messages"
ID = "text or a whole number"
TEXT = "text"


class Row(BaseModel):
    """A row of a file: its declared fields typed strictly, other keys kept as they are."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    fix: ClassVar[str] = "fix or remove that line"  # how a right row looks, after the problem

    def get(self, key: str, default: Any = None) -> Any:
        """A field or kept key, as a dict would give it."""
        value = getattr(self, key, None)
        if value is None:
            value = (self.model_extra or {}).get(key)
        return default if value is None else value


R = TypeVar("R", bound=Row)


def check_row(path: Path, line: int, record: dict[str, Any], schema: type[R]) -> R:
    """The row as its schema declares it, or an InputError naming the file, line and field."""
    try:
        return schema.model_validate(record)
    except ValidationError as e:
        raise InputError(path, line, f"{problem(e, schema, record)}; {schema.fix}") from None


def checked_jsonl(path: str | Path, schema: type[R]) -> Iterator[tuple[int, R]]:
    """(line, row) for each record of a JSONL file, checked against `schema`."""
    path = Path(path)
    for line, record in numbered_jsonl(path):
        yield line, check_row(path, line, record, schema)


def numbered_csv(path: str | Path, required: Sequence[str],
                 fix: str = "name the columns in the first line") -> Iterator[tuple[int, dict]]:
    """(line, row) for each row of a CSV file with a header; a row with more or fewer fields
    than the header has, or a missing column, is an error naming the line."""
    path = Path(path)
    csv.field_size_limit(MAX_LINE)  # read_text has refused longer lines already
    reader = csv.reader(io.StringIO(read_text(path), newline=""), strict=True)
    try:
        header = next(reader, [])
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(path, 1, f"no '{missing[0]}' column (columns: "
                             f"{', '.join(header) or 'none'}); {fix}")
        start = reader.line_num + 1
        for fields in reader:
            if fields and len(fields) != len(header):
                raise InputError(path, start, f"{len(fields)} field{'s' * (len(fields) != 1)} "
                                 f"where the header has {len(header)}; quote a field that "
                                 "holds a comma")
            if fields:
                yield start, dict(zip(header, fields, strict=True))
            start = reader.line_num + 1
    except csv.Error as e:
        raise InputError(path, reader.line_num, f"not valid CSV ({e}); fix that line") from None


def problem(e: ValidationError, schema: type[Row], record: dict[str, Any]) -> str:
    """The one problem to show: of the errors pydantic found (one per member of a union), the
    one that reached deepest into the row, in words."""
    found = [(*_where(err["loc"], record, err["type"] == "missing"), err)
             for err in e.errors(include_url=False)]
    where, value, err = max(found, key=lambda f: len(f[0]))
    if err["type"] == "missing":
        return f"{where}: missing"
    if not where:  # a check of the whole row
        return err["msg"].removeprefix("Value error, ")
    described = schema.model_fields.get(where)
    if err["type"].endswith("_type") and described is not None and described.description:
        return f"{where}: expected {described.description}, found {kind(value)}"
    message = err["msg"][0].lower() + err["msg"][1:]
    return f"{where}: {message}, found {kind(value)}"


def _where(loc: tuple[Any, ...], record: Any, missing: bool) -> tuple[str, Any]:
    """`field[2].content` for pydantic's location, with the value there; the names of union
    members in the location (`str`, `list[Message]`) are not keys of the row, and are left out."""
    where, value = "", record
    for i, part in enumerate(loc):
        if isinstance(part, int) and isinstance(value, list) and part < len(value):
            where, value = f"{where}[{part}]", value[part]
        elif isinstance(value, dict) and isinstance(part, str) and (
                part in value or (missing and i == len(loc) - 1)):
            where, value = f"{where}.{part}" if where else part, value.get(part)
    return where, value


def kind(value: Any) -> str:
    """What a JSON value is, in words: `a number (17)`, `text ('maybe')`, `a list`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"true/false ({str(value).lower()})"
    if isinstance(value, (int, float)):
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        return f"a number ({text if len(text) <= 20 else text[:17] + '...'})"
    if isinstance(value, str):
        return f"text ({value[:40]!r})"
    return "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) \
        else type(value).__name__
