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

COLUMNS = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected"),
           "reward": ("prompt", "chosen", "rejected"), "grpo": ("prompt", "id")}
MIN_SPLIT_PROMPTS = 10  # below this a held-out split leaves too little to learn from or judge by


class SftRow(Row):
    fix: ClassVar[str] = "`cai train sft` reads TRL's prompt/completion format"
    prompt: Prompt = Field(description=PROMPT)
    completion: Reply = Field(description=PROMPT)


class PairRow(Row):
    fix: ClassVar[str] = "`cai train` reads TRL's prompt/chosen/rejected format"
    prompt: Prompt = Field(description=PROMPT)
    chosen: Reply = Field(description=PROMPT)
    rejected: Reply = Field(description=PROMPT)
    soft_label: Probability | None = Field(None, description="P(chosen is better), a number "
                                                             "from 0 to 1")
    margin: float | None = Field(None, description="a number")


SCHEMAS: dict[str, type[Row]] = {"sft": SftRow, "dpo": PairRow, "reward": PairRow}


def read_rows(files: Sequence[Path], kind: str, min_margin: float = 0.0) -> tuple[list, int]:
    """The records of `files` in the format `kind` trains on, each checked against its
    schema; pairs judged with a margin under `min_margin` are left out and counted."""
    rows, dropped = [], 0
    for path in files:
        for _, row in checked_jsonl(path, SCHEMAS[kind]):
            margin = row.get("margin")
            if kind != "sft" and margin is not None and margin < min_margin:
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


def to_dataset(rows: list[dict[str, Any]], kind: str) -> Any:
    """TRL's columns only: provenance keys stay in our files, since TRL would read some of them
    (RewardTrainer takes a `margin` column as a loss margin) and mixed types break Arrow."""
    from datasets import Dataset

    records = [{c: r[c] for c in COLUMNS[kind]} for r in rows]
    if kind == "dpo":
        for record, row in zip(records, rows, strict=True):
            # P(chosen is better) from the judge; pairs without one are taken as certain.
            label = row.get("soft_label")
            record["soft_label"] = 1.0 if label is None else float(label)
    return Dataset.from_list(records)
