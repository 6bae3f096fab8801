"""Prompt files: JSONL (`prompt` or `messages`), CSV with a `prompt` column, or plain text."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai.chat import Message
from cai.errors import InputError
from cai.records import numbered_jsonl, prompt_hash, read_text


@dataclass(frozen=True)
class PromptItem:
    id: str
    messages: tuple[Message, ...]  # the conversation so far, ending with the user's turn
    line: int
    kind: str | None = None  # what an evaluation suite expects: safe, unsafe, helpful, ...
    category: str | None = None

    @property
    def text(self) -> str:
        return self.messages[-1].content


def prompt_id(messages: tuple[Message, ...]) -> str:
    """A stable id from the content, so reruns find the same prompts whatever their order."""
    return prompt_hash([m.to_dict() for m in messages])[:16]


def read_prompts(path: str | Path, limit: int | None = None) -> list[PromptItem]:
    """Read a prompt file; duplicates (same id) are kept once."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "prompt file not found; pass a .jsonl, .csv or .txt file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        items = _jsonl(path)
    elif suffix == ".csv":
        items = _csv(path)
    else:
        items = _text(path)
    seen: dict[str, PromptItem] = {}
    unique = []
    for item in items:
        first = seen.get(item.id)
        if first is None:
            seen[item.id] = item
            unique.append(item)
        elif first.messages != item.messages:  # a repeat word for word is kept once
            raise InputError(path, item.line, f"id '{item.id}' was already used on line "
                             f"{first.line} for another prompt; give each prompt its own id")
    if not unique:
        raise InputError(path, None, "no prompts in the file")
    return unique[:limit] if limit else unique


def _item(path: Path, line: int, messages: list[Message], given_id: Any = None,
          row: dict[str, Any] | None = None) -> PromptItem:
    if not messages or messages[-1].role != "user":
        raise InputError(path, line, "the conversation must end with a user message")
    if not messages[-1].content.strip():
        raise InputError(path, line, "the prompt is empty; write the prompt or remove the line")
    msgs = tuple(messages)
    row = row or {}
    return PromptItem(str(given_id) if given_id not in (None, "") else prompt_id(msgs), msgs, line,
                      _text_or_none(row.get("kind")), _text_or_none(row.get("category")))


def _text_or_none(value: Any) -> str | None:
    return str(value).strip() or None if value not in (None, "") else None


def _jsonl(path: Path) -> list[PromptItem]:
    return [_item(path, line, _messages(path, line, record), record.get("id"), record)
            for line, record in numbered_jsonl(path)]


def _messages(path: Path, line: int, record: dict[str, Any]) -> list[Message]:
    if "messages" in record or isinstance(record.get("prompt"), list):
        raw = record.get("messages", record.get("prompt"))
        if not isinstance(raw, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in raw
        ):
            raise InputError(path, line, "'messages' must be a list of "
                             '{"role": "user", "content": "..."} objects')
        return [Message(m["role"], m["content"]) for m in raw]
    prompt = record.get("prompt")
    if not isinstance(prompt, str):
        keys = ", ".join(record) or "none"
        raise InputError(path, line, f"no 'prompt' text (keys found: {keys}); give each line "
                         "a 'prompt' string or a 'messages' list")
    return [Message("user", prompt)]


def _csv(path: Path) -> list[PromptItem]:
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "prompt" not in reader.fieldnames:
            raise InputError(path, 1, f"no 'prompt' column (columns: "
                             f"{', '.join(reader.fieldnames or [])}); name the column 'prompt'")
        return [
            _item(path, reader.line_num, [Message("user", row["prompt"] or "")], row.get("id"),
                  row)
            for row in reader
        ]


def _text(path: Path) -> list[PromptItem]:
    lines = read_text(path).splitlines()
    return [_item(path, n, [Message("user", t.strip())]) for n, t in enumerate(lines, 1)
            if t.strip()]
