"""Prompt files: JSONL (`prompt` or `messages`), CSV with a `prompt` column, or plain text;
and the slice of them one machine takes (`--shard K/N`): the K-th of N deterministic slices,
by a hash of each item's id, so that every machine takes its own slice of the same file."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

from pydantic import Field, model_validator

from cai.chat import Message, prompt_hash
from cai.errors import CaiError, InputError
from cai.records.read import read_text, text_lines
from cai.schema import (
    ID,
    MESSAGES,
    PROMPT,
    TEXT,
    Conversation,
    Id,
    Prompt,
    Row,
    check_row,
    checked_jsonl,
    numbered_csv,
)


@dataclass(frozen=True)
class PromptItem:
    id: str
    messages: tuple[Message, ...]  # the conversation so far, ending with the user's turn
    line: int
    kind: str | None = None  # what an evaluation suite expects: safe, unsafe, helpful, ...
    category: str | None = None
    reference: str | None = None  # a reference answer, where the file gives one

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


class PromptRow(Row):
    """A line of a JSONL prompt file, or a row of a CSV one."""

    fix: ClassVar[str] = 'give each line a "prompt" string or a "messages" list'
    prompt: Prompt | None = Field(None, description=PROMPT)
    messages: Conversation | None = Field(None, description=MESSAGES)
    id: Id | None = Field(None, description=ID)
    kind: str | None = Field(None, description=TEXT)  # what a suite expects of the answer
    category: str | None = Field(None, description=TEXT)
    reference: str | None = Field(None, description=TEXT)  # for GRPO's reference reward

    @model_validator(mode="after")
    def has_prompt(self) -> PromptRow:
        if self.prompt is None and self.messages is None:
            keys = ", ".join(self.model_extra or {}) or "none"
            raise ValueError(f"no 'prompt' text (keys found: {keys})")
        return self

    def conversation(self) -> list[Message]:
        raw = self.messages if self.messages is not None else self.prompt
        if isinstance(raw, str):
            return [Message("user", raw)]
        return [Message(m["role"], m["content"]) for m in raw or []]


def _item(path: Path, line: int, row: PromptRow) -> PromptItem:
    messages = row.conversation()
    if not messages or messages[-1].role != "user":
        raise InputError(path, line, "the conversation must end with a user message")
    if not messages[-1].content.strip():
        raise InputError(path, line, "the prompt is empty; write the prompt or remove the line")
    msgs = tuple(messages)
    given = row.id if row.id not in (None, "") else None
    return PromptItem(given or prompt_id(msgs), msgs, line, _text_or_none(row.kind),
                      _text_or_none(row.category), row.reference or None)


def _text_or_none(value: str | None) -> str | None:
    return value.strip() or None if value else None


def _jsonl(path: Path) -> list[PromptItem]:
    return [_item(path, line, row) for line, row in checked_jsonl(path, PromptRow)]


def _csv(path: Path) -> list[PromptItem]:
    return [_item(path, line, check_row(path, line, row, PromptRow))
            for line, row in numbered_csv(path, ["prompt"], "name the column 'prompt'")]


def _text(path: Path) -> list[PromptItem]:
    lines = text_lines(read_text(path))
    return [_item(path, n, PromptRow.model_validate({"prompt": t.strip()}))
            for n, t in enumerate(lines, 1) if t.strip()]


# ------------------------------------------------------------------ shards

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    try:
        shard = int(k), int(n)
    except ValueError:
        shard = (0, 0)
    if not 1 <= shard[0] <= shard[1]:
        raise CaiError(f"--shard {text}: give K/N with 1 <= K <= N, e.g. 2/8 for the second "
                       "of eight slices")
    return shard


def in_shard(item_id: str, k: int, n: int) -> bool:
    digest = hashlib.sha256(item_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


def take(items: Sequence[T], shard: str | None) -> list[T]:
    """The items of one shard (all of them without `--shard`)."""
    if shard is None:
        return list(items)
    k, n = parse_shard(shard)
    return [i for i in items if in_shard(str(getattr(i, "id")), k, n)]  # noqa: B009
