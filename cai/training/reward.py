"""A reward model (`cai train reward`): TRL's RewardTrainer on judged pairs, a score head on
the policy's weights. It scores answers and writes none, so it is never merged or asked for
held-out answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cai.models.budget import Budget
from cai.training.data import PAIR_COLUMNS, PairRow, Split, datasets, read_rows


@dataclass(frozen=True)
class RewardModel:
    """A reward model on preference pairs; `min_margin` leaves out the pairs the judge could
    hardly tell apart."""

    min_margin: float = 0.0
    kind: ClassVar[str] = "reward"
    description: ClassVar[str] = "A reward model on preference pairs"
    generates: ClassVar[bool] = False
    learning_rates: ClassVar[dict[bool, float]] = {False: 1e-5, True: 1e-4}
    trl_defaults: ClassVar[dict[str, Any]] = {}
    heldout_metric: ClassVar[str] = "eval_accuracy"

    @staticmethod
    def config_class() -> type:
        from trl import RewardConfig

        return RewardConfig

    def budget(self, deadline: float | None) -> Budget:
        return Budget(deadline=deadline)

    def rows(self, data: Sequence[Path]) -> tuple[list[dict[str, Any]], int]:
        return read_rows(data, PairRow, self.min_margin)

    def trainer(self, common: dict[str, Any], split: Split) -> Any:
        from trl import RewardTrainer

        return RewardTrainer(**common, **datasets(split, PAIR_COLUMNS))

    def example(self, row: dict[str, Any], tokenizer: Any) -> dict[str, str]:
        return {"chosen": tokenizer.decode(row["chosen_ids"]),
                "rejected": tokenizer.decode(row["rejected_ids"])}

    def summary(self, trainer: Any, split: Split, heldout: dict[str, Any]) -> dict[str, Any]:
        return {}
