"""What a way of training brings to a run; sft.py, dpo.py, reward.py and grpo.py each hold one.

A method is a small typed config (DPO's `min_margin`, GRPO's judge and prompts) with the
same few parts: its rows, read and checked; its TRL trainer; its first example as the model
sees it; and its part of the summary. train.py does the rest, once for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from cai.models.budget import Budget
    from cai.training.data import Split


class Method(Protocol):
    kind: ClassVar[str]  # its command, `cai train KIND`, and the `kind` of train_summary.json
    description: ClassVar[str]  # what it trains, in the words of the model card
    generates: ClassVar[bool]  # a causal LM that answers prompts; False: a reward model
    learning_rates: ClassVar[dict[bool, float]]  # cai's defaults: {LoRA?: rate}
    trl_defaults: ClassVar[dict[str, Any]]  # its other TRL defaults; the file's `trl:` wins
    heldout_metric: ClassVar[str]  # the held-out figure its command prints

    @property
    def min_margin(self) -> float:
        """Pairs the judge separated by less than this are left out."""
        ...

    def config_class(self) -> type:
        """TRL's config class for it."""
        ...

    def budget(self, deadline: float | None) -> Budget:
        """What stops training early, at the end of a step, with a checkpoint."""
        ...

    def rows(self, data: Sequence[Path]) -> tuple[list[dict[str, Any]], int]:
        """The rows it trains on, checked, and how many were left out under `min_margin`."""
        ...

    def trainer(self, common: dict[str, Any], split: Split) -> Any:
        """TRL's trainer, given the arguments every TRL trainer takes and the rows."""
        ...

    def example(self, row: dict[str, Any], tokenizer: Any) -> dict[str, str]:
        """The first training example as the model sees it."""
        ...

    def summary(self, trainer: Any, split: Split, heldout: dict[str, Any]) -> dict[str, Any]:
        """Its part of train_summary.json, once training and evaluation are done; `notes`
        join the run's."""
        ...


def method_class(name: str) -> Any:
    """The method a name stands for, as the loop's config names them (`sft+dpo`)."""
    from cai.training.dpo import DPO
    from cai.training.grpo import GRPO
    from cai.training.reward import RewardModel
    from cai.training.sft import SFT

    return {m.kind: m for m in (SFT, DPO, RewardModel, GRPO)}[name]
