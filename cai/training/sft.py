"""Supervised fine-tuning (`cai train sft`): TRL's SFTTrainer on the revisions of `cai revise`,
the loss taken on the completion only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from cai.models.budget import Budget
from cai.schema import PROMPT, Prompt, Reply, Row
from cai.training.data import Split, datasets, read_rows

COLUMNS = ("prompt", "completion")


class SftRow(Row):
    fix: ClassVar[str] = "`cai train sft` reads TRL's prompt/completion format"
    prompt: Prompt = Field(description=PROMPT)
    completion: Reply = Field(description=PROMPT)


@dataclass(frozen=True)
class SFT:
    """SFT on prompt/completion records: nothing to set beyond the `trl:` mapping."""

    kind: ClassVar[str] = "sft"
    description: ClassVar[str] = "Supervised fine-tuning on the completions"
    generates: ClassVar[bool] = True
    learning_rates: ClassVar[dict[bool, float]] = {False: 2e-5, True: 2e-4}
    trl_defaults: ClassVar[dict[str, Any]] = {}
    heldout_metric: ClassVar[str] = "eval_loss"
    min_margin: ClassVar[float] = 0.0  # a completion has no margin: none is left out

    @staticmethod
    def config_class() -> type:
        from trl import SFTConfig

        return SFTConfig

    def budget(self, deadline: float | None) -> Budget:
        return Budget(deadline=deadline)

    def rows(self, data: Sequence[Path]) -> tuple[list[dict[str, Any]], int]:
        return read_rows(data, SftRow)

    def trainer(self, common: dict[str, Any], split: Split) -> Any:
        from trl import SFTTrainer

        return SFTTrainer(**common, **datasets(split, COLUMNS))

    def example(self, row: dict[str, Any], tokenizer: Any) -> dict[str, str]:
        # labels are the input ids, with -100 where no loss is taken
        pairs = list(zip(row["input_ids"], row.get("labels") or row["input_ids"], strict=True))
        return {"prompt": tokenizer.decode([t for t, label in pairs if label == -100]),
                "trained_on": tokenizer.decode([t for t, label in pairs if label != -100])}

    def summary(self, trainer: Any, split: Split, heldout: dict[str, Any]) -> dict[str, Any]:
        return {}
