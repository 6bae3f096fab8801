"""The pairs people review, and their labels.

A review covers a folder (the judge's `prefs.jsonl`, `low_margin.jsonl` and `unjudged.jsonl`,
or the pairs of `cai revise`) or one TRL preference file. The labels go into that folder, or
beside the file (`pairs.jsonl` -> `pairs.reviews.jsonl`, `pairs.gold.jsonl`), appended and
flushed one at a time, so that stopping loses nothing and a reviewer goes on where they
stopped. An undo is appended too: the file is a log, never rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from cai.chat import reply_text
from cai.errors import CaiError, InputError
from cai.records.read import numbered_jsonl
from cai.schema import (
    ID,
    PROMPT,
    TEXT,
    Id,
    Probability,
    Prompt,
    Reply,
    Row,
    check_row,
    checked_jsonl,
)

FOLDER_FILES = ("prefs.jsonl", "low_margin.jsonl", "unjudged.jsonl")
CHOICES = ("a", "b", "tie", "skip")


@dataclass(frozen=True)
class Pair:
    """Two replies to one prompt. `x` is the reply the data calls chosen (or the first of an
    unjudged pair); `judge_x` is the judge's P(x better), None where no judge decided;
    `unjudged` marks a pair the judge tried and could not decide."""

    id: str
    prompt: list[dict[str, str]]
    x: str
    y: str
    judge_x: float | None
    principles: tuple[str, ...]
    source: str
    unjudged: bool = False
    split: bool = False  # the judges of a panel went different ways on it


@dataclass(frozen=True)
class Paths:
    pairs: list[Path]
    reviews: Path
    gold: Path
    stats: Path


def paths(target: str | Path) -> Paths:
    target = Path(target)
    if target.is_dir():
        found = [target / n for n in FOLDER_FILES if (target / n).is_file()]
        return Paths(found, target / "reviews.jsonl", target / "gold.jsonl",
                     target / "review_stats.json")
    if target.is_file():
        return Paths([target], target.with_name(f"{target.stem}.reviews.jsonl"),
                     target.with_name(f"{target.stem}.gold.jsonl"),
                     target.with_name(f"{target.stem}.review_stats.json"))
    raise CaiError(f"{target}: no such folder or file; give a folder of cai output or a TRL "
                   "preference file")


def read_pairs(target: str | Path) -> list[Pair]:
    """Every pair under `target`, each once, in file order."""
    found: dict[str, Pair] = {}
    for path in paths(target).pairs:
        for line, r in numbered_jsonl(path):
            pair = _pair(path, line, r)
            if pair is not None:
                found.setdefault(pair.id, pair)
    if not found:
        where = f" in {', '.join(FOLDER_FILES)}" if Path(target).is_dir() else ""
        raise CaiError(f"{target}: no pairs to review (looked for prompt/chosen/rejected "
                       f"records{where})")
    return list(found.values())


class PairRow(Row):
    """A line of a file under review: a TRL preference pair (judged or not), or a judge's
    unjudged row (its `responses` and the `pair` of them it could not decide)."""

    fix: ClassVar[str] = "give TRL preference rows (prompt, chosen, rejected)"
    prompt: Prompt | None = Field(None, description=PROMPT)
    chosen: Reply | None = Field(None, description=PROMPT)
    rejected: Reply | None = Field(None, description=PROMPT)
    replies: list[Reply] | None = Field(None, min_length=2, max_length=2,
                                        description="the two replies")
    responses: list[str] | None = Field(None, description="a list of texts")
    pair: list[int] | None = Field(None, min_length=2, max_length=2,
                                   description="two indexes, e.g. [0, 1]")
    soft_label: Probability | None = Field(None, description="a number from 0 to 1")
    pair_id: Id | None = Field(None, description=ID)
    id: Id | None = Field(None, description=ID)
    principles: list[str] | None = Field(None, description="a list of principle ids")
    panel_split: bool | None = Field(None, description="true or false")


def _pair(path: Path, line: int, record: dict[str, Any]) -> Pair | None:
    r = check_row(path, line, record, PairRow)
    if r.prompt is None:
        return None
    prompt = [{"role": "user", "content": r.prompt}] if isinstance(r.prompt, str) \
        else [{"role": m["role"], "content": m["content"]} for m in r.prompt]
    judge_x = None
    if r.chosen is not None and r.rejected is not None:
        x, y = reply_text(r.chosen), reply_text(r.rejected)
        judge_x = r.soft_label if "margin" in record else None  # judged pairs only
    elif r.replies is not None:  # `cai judge`'s unjudged.jsonl: the two it could not decide
        x, y = (reply_text(v) for v in r.replies)
    elif r.responses is not None and r.pair is not None:  # responses and the two compared
        i, j = r.pair
        if not (0 <= i < len(r.responses) and 0 <= j < len(r.responses)):
            raise InputError(path, line, f"pair: {list(r.pair)} is not two of the "
                             f"{len(r.responses)} responses; {PairRow.fix}")
        x, y = r.responses[i], r.responses[j]
    else:
        return None
    pid = r.pair_id or r.id or hashlib.sha256(json.dumps([prompt, x, y]).encode()).hexdigest()[:16]
    return Pair(pid, prompt, x, y, judge_x, tuple(r.principles or ()), f"{path.name}:{line}",
                unjudged=path.name == "unjudged.jsonl", split=bool(r.panel_split))


def sample(pairs: list[Pair], n: int | None, seed: int, unjudged_first: bool = False,
           split_first: bool = False) -> list[Pair]:
    """The pairs to review, in a seeded order: the same for every reviewer with one seed.
    With `unjudged_first`, the pairs the judge could not decide come before the others (and
    into a sample of N first); with `split_first`, the pairs a panel of judges split on:
    a person's label is worth most where the judges had none, or disagreed. (Both: the
    unjudged, then the split, then the rest.)"""
    order = sorted(pairs, key=lambda p: hashlib.sha256(f"{seed}:{p.id}".encode()).digest())
    # stable: the seeded order within each group
    order.sort(key=lambda p: (unjudged_first and not p.unjudged, split_first and not p.split))
    return order[:n] if n else order


def shown_order(pair_id: str, reviewer: str, seed: int) -> str:
    """`xy` (x shown as A) or `yx`: random per pair and reviewer, fixed by the seed."""
    return "xy" if random.Random(f"{seed}:{reviewer}:{pair_id}").random() < 0.5 else "yx"


def preferred(choice: str, order: str) -> str | None:
    """What a choice of A, B or tie says about x and y: `x`, `y`, `tie`, or None (skipped)."""
    if choice == "tie":
        return "tie"
    if choice == "skip":
        return None
    first = choice == "a"
    return ("x" if first else "y") if order == "xy" else ("y" if first else "x")


def append(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append one event to the reviews log and flush it to disk at once."""
    record = {**record, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return record


class LabelRow(Row):
    """A line of the reviews log: a label, or the undo of one."""

    fix: ClassVar[str] = "the reviews log is written by `cai review`; restore or remove that line"
    event: Literal["label", "undo"] = "label"
    reviewer: str = Field(description=TEXT)
    pair_id: Id = Field(description=ID)
    choice: Literal[CHOICES] | None = None  # type: ignore[valid-type]
    order: Literal["xy", "yx"] | None = None

    @model_validator(mode="after")
    def labelled(self) -> LabelRow:
        if self.event == "label" and (self.choice is None or self.order is None):
            raise ValueError("a label without its 'choice' and 'order'")
        return self


def labels(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Each reviewer's standing label per pair: the last one, undos applied."""
    standing: dict[tuple[str, str], list[dict[str, Any]]] = {}
    if not path.exists():
        return {}
    for line, r in checked_jsonl(path, LabelRow):
        key = (r.reviewer, str(r.pair_id))
        if r.event == "undo":
            if standing.get(key):
                standing[key].pop()
        else:
            standing.setdefault(key, []).append({**r.model_dump(), "_line": line})
    return {k: v[-1] for k, v in standing.items() if v}
