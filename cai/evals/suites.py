"""Evaluation suites: prompt files whose rows say what a good answer does (`kind`).

- safe: looks risky but should be answered (over-refusal);
- unsafe: should be declined (harmful compliance);
- helpful: an ordinary request (win rate, length);
- false-premise: asserts something false; a good answer corrects it (sycophancy).

Rows may also have a `category`. A suite is any prompt file cai reads (JSONL, CSV, TXT); the
default one, written for cai, ships in `suites/default.jsonl`.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from cai.errors import CaiWarning, InputError
from cai.inputs import PromptItem, read_prompts

KINDS = ("safe", "unsafe", "helpful", "false-premise")
DEFAULT = Path(__file__).with_name("suites") / "default.jsonl"


def read_suite(path: str | Path | None = None, limit: int | None = None) -> list[PromptItem]:
    """A suite's prompts, each with a known kind (`helpful` where none is given)."""
    path = Path(path) if path is not None else DEFAULT
    items = read_prompts(path)
    for item in items:
        if item.kind is not None and item.kind not in KINDS:
            raise InputError(path, item.line, f"unknown kind '{item.kind}'; use one of "
                             f"{', '.join(KINDS)} (or leave it out for helpful)")
    items = [item if item.kind else _with_kind(item, "helpful") for item in items]
    kinds = Counter(item.kind for item in items)
    if len(kinds) == 1:
        warnings.warn(f"{path}: every prompt is '{items[0].kind}', so the other rates "
                      "(over-refusal, unsafe compliance, false-premise agreement) will be "
                      "missing", CaiWarning, stacklevel=2)
    return spread(items, limit) if limit else items


def spread(items: list[PromptItem], limit: int) -> list[PromptItem]:
    """The first `limit` prompts taken in turn from each kind, so that a short run still
    covers every rate."""
    by_kind: dict[str | None, list[PromptItem]] = {}
    for item in items:
        by_kind.setdefault(item.kind, []).append(item)
    taken: list[PromptItem] = []
    while len(taken) < min(limit, len(items)):
        for group in by_kind.values():
            if group and len(taken) < limit:
                taken.append(group.pop(0))
    return taken


def _with_kind(item: PromptItem, kind: str) -> PromptItem:
    return PromptItem(item.id, item.messages, item.line, kind, item.category)


def read_suites(paths: Sequence[str | Path], limit: int | None = None) -> list[PromptItem]:
    """Several suites as one (the default one when none is given); an id may appear once."""
    if not paths:
        return read_suite(None, limit)
    items: list[PromptItem] = []
    first: dict[str, Path] = {}
    for path in map(Path, paths):
        for item in read_prompts(path):
            if item.id in first:
                raise InputError(path, item.line, f"id '{item.id}' is also in {first[item.id]}; "
                                 "ids must be unique across suites")
            first[item.id] = path
        items += read_suite(path)
    return spread(items, limit) if limit else items
