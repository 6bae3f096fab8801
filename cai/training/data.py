"""Training data: cai's records read in TRL's formats, a held-out split by prompt, and the
columns TRL is given."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from cai.chat import prompt_hash
from cai.errors import CaiError
from cai.schema import PROMPT, Probability, Prompt, Reply, Row, checked_jsonl

MIN_SPLIT_PROMPTS = 10  # below this a held-out split leaves too little to learn from or judge by


class PairRow(Row):
    """A preference pair, what DPO and a reward model train on."""

    fix: ClassVar[str] = "`cai train` reads TRL's prompt/chosen/rejected format"
    prompt: Prompt = Field(description=PROMPT)
    chosen: Reply = Field(description=PROMPT)
    rejected: Reply = Field(description=PROMPT)
    soft_label: Probability | None = Field(None, description="P(chosen is better), a number "
                                                             "from 0 to 1")
    margin: float | None = Field(None, description="a number")


PAIR_COLUMNS = ("prompt", "chosen", "rejected")


def read_rows(files: Sequence[Path], schema: type[Row],
              min_margin: float | None = None) -> tuple[list[dict[str, Any]], int]:
    """The records of `files`, each checked against `schema`; with `min_margin`, pairs judged
    with a margin under it are left out and counted."""
    rows, dropped = [], 0
    for path in files:
        for _, row in checked_jsonl(path, schema):
            margin = row.get("margin")
            if min_margin is not None and margin is not None and margin < min_margin:
                dropped += 1
                continue
            rows.append(row.model_dump(exclude_unset=True))
    if not rows:
        raise CaiError(f"no rows to train on in {', '.join(map(str, files))}"
                       + (f" ({dropped} under --min-margin {min_margin})" if dropped else ""))
    return rows, dropped


def prompt_key(row: dict[str, Any]) -> str:
    """A hash of the prompt's content: pairs that share a prompt share a key."""
    return prompt_hash(row["prompt"])


@dataclass(frozen=True)
class Split:
    train: list[dict[str, Any]]
    heldout: list[dict[str, Any]]
    note: str | None = None


def split_heldout(rows: list[dict[str, Any]], fraction: float) -> Split:
    """Hold out whole prompts, the same ones every run: those whose hashes sort first.

    >>> rows = [{"prompt": f"p{i}", "chosen": "a"} for i in range(20)]
    >>> s = split_heldout(rows, 0.1)
    >>> len(s.train), len(s.heldout)
    (18, 2)
    """
    keys = sorted({prompt_key(r) for r in rows})
    if fraction <= 0:
        return Split(rows, [], "no held-out split: --eval-fraction is 0")
    if len(keys) < MIN_SPLIT_PROMPTS:
        return Split(rows, [], f"no held-out split: only {len(keys)} distinct prompts (fewer "
                     f"than {MIN_SPLIT_PROMPTS}), so no held-out metrics or answers")
    held = set(keys[:max(1, round(fraction * len(keys)))])
    return Split([r for r in rows if prompt_key(r) not in held],
                 [r for r in rows if prompt_key(r) in held])


def to_dataset(rows: list[dict[str, Any]], columns: Sequence[str]) -> Any:
    """TRL's columns only: provenance keys stay in our files, since TRL would read some of them
    (RewardTrainer takes a `margin` column as a loss margin) and mixed types break Arrow."""
    from datasets import Dataset

    return Dataset.from_list([{c: r[c] for c in columns} for r in rows])


def datasets(split: Split, columns: Sequence[str]) -> dict[str, Any]:
    """A trainer's training and evaluation sets, the held-out rows evaluated on."""
    return {"train_dataset": to_dataset(split.train, columns),
            "eval_dataset": to_dataset(split.heldout, columns) if split.heldout else None}
