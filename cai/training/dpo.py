"""DPO on judged pairs (`cai train dpo`): TRL's DPOTrainer with each pair's own soft label
in its loss.

The soft-label loss is our own code because no library does it: TRL's DPOTrainer has no
per-example weight, and its `label_smoothing` is one number for the whole set.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cai.models.budget import Budget
from cai.training.data import PAIR_COLUMNS, PairRow, Split, datasets, read_rows

COLUMNS = (*PAIR_COLUMNS, "soft_label")
SOFT_LABELS_UNUSED = ("soft labels not used: they apply to the sigmoid loss only, and this "
                      "run's trl: settings choose another")


@dataclass(frozen=True)
class DPO:
    """DPO on preference pairs, each weighted by its soft label; `min_margin` leaves out the
    pairs the judge could hardly tell apart."""

    min_margin: float = 0.0
    kind: ClassVar[str] = "dpo"
    description: ClassVar[str] = "DPO on preference pairs"
    generates: ClassVar[bool] = True
    learning_rates: ClassVar[dict[bool, float]] = {False: 1e-6, True: 1e-5}
    trl_defaults: ClassVar[dict[str, Any]] = {}
    heldout_metric: ClassVar[str] = "eval_rewards/accuracies"

    @staticmethod
    def config_class() -> type:
        from trl import DPOConfig

        return DPOConfig

    def budget(self, deadline: float | None) -> Budget:
        return Budget(deadline=deadline)

    def rows(self, data: Sequence[Path]) -> tuple[list[dict[str, Any]], int]:
        return read_rows(data, PairRow, self.min_margin)

    def trainer(self, common: dict[str, Any], split: Split) -> Any:
        import copy

        ref = None  # with LoRA the reference is the base model, adapters switched off
        if common["peft_config"] is None:
            # A frozen copy of the starting weights, made here: left alone, TRL would load the
            # reference again from the path in the model's config, which need not hold them
            # (a merged adapter, or a folder written to since).
            ref = copy.deepcopy(common["model"]).eval().requires_grad_(False)
        labelled = Split(_labelled(split.train), _labelled(split.heldout))
        return soft_label_dpo_trainer()(ref_model=ref, **common,
                                        **datasets(labelled, COLUMNS))

    def example(self, row: dict[str, Any], tokenizer: Any) -> dict[str, str]:
        return {"prompt": tokenizer.decode(row["prompt_ids"]),
                "chosen": tokenizer.decode(row["chosen_ids"]),
                "rejected": tokenizer.decode(row["rejected_ids"])}

    def summary(self, trainer: Any, split: Split, heldout: dict[str, Any]) -> dict[str, Any]:
        part: dict[str, Any] = {}
        if not trainer.uses_soft_labels and any("soft_label" in r
                                                for r in split.train + split.heldout):
            part["notes"] = [SOFT_LABELS_UNUSED]
        if split.heldout:
            part["implicit_reward_accuracy"] = heldout.get("eval_rewards/accuracies")
        return part


def _labelled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """P(chosen is better) from the judge beside each pair; pairs without one are certain."""
    return [{**r, "soft_label": 1.0 if r.get("soft_label") is None else float(r["soft_label"])}
            for r in rows]


def soft_dpo_loss(margin: Any, label: Any, beta: float) -> Any:
    """Conservative DPO: the sigmoid loss against the label p = P(chosen is better).

    margin is h = log-ratio(chosen) - log-ratio(rejected); the loss is
    -(p log sigmoid(beta h) + (1 - p) log sigmoid(-beta h)): plain DPO at p = 1, and at p < 1
    its minimum sits at sigmoid(beta h) = p instead of at an infinite margin.
    """
    import torch.nn.functional as F

    z = beta * margin
    return -(label * F.logsigmoid(z) + (1 - label) * F.logsigmoid(-z))


def sequence_logps(per_token: Any, mask: Any, ld_alpha: float | None = None) -> Any:
    """Completion log-probability per sequence of a [chosen..., rejected...] batch.

    With ld_alpha (length-desensitised DPO), the tokens of the longer completion past the
    length of the shorter one count ld_alpha times, so length alone moves the margin less.
    """
    mask = mask.to(per_token.dtype)
    if ld_alpha is None:
        return (per_token * mask).sum(dim=1)
    position = mask.cumsum(dim=1)
    chosen, rejected = mask.sum(dim=1).chunk(2)
    shared = chosen.minimum(rejected).repeat(2).unsqueeze(1)
    inside = (position <= shared).to(per_token.dtype)
    return (per_token * mask * (inside + ld_alpha * (1 - inside))).sum(dim=1)


@functools.cache
def soft_label_dpo_trainer() -> type:
    """TRL's DPOTrainer with each pair's soft label in its sigmoid loss.

    Made on first use, so that importing this module does not import TRL.
    """
    import torch
    from trl import DPOTrainer

    not_model_inputs = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}

    class SoftLabelDPOTrainer(DPOTrainer):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.data_collator = _with_labels(self.data_collator)

        @property
        def uses_soft_labels(self) -> bool:
            """Only the plain sigmoid loss takes soft labels; other losses run as TRL has them."""
            return (self.loss_types == ["sigmoid"] and self.f_divergence_type == "reverse_kl"
                    and not self.use_weighting and not self.aux_loss_enabled)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            columns: list[str] = list(self._signature_columns or [])
            if "soft_label" not in columns:  # else Trainer drops the column before collating
                self._signature_columns = [*columns, "soft_label"]  # type: ignore[assignment]

        def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
            labels = inputs.pop("soft_label")
            if return_outputs or not self.uses_soft_labels:
                return super()._compute_loss(model, inputs, return_outputs)
            completion = inputs["completion_mask"]
            targets = inputs["input_ids"].masked_fill(completion == 0, -100)
            forward = {k: v for k, v in inputs.items() if k not in not_model_inputs}
            per_token = model(**forward, labels=targets, use_cache=False,
                              fused_lm_head=True).log_probs
            mask = completion[:, 1:]  # the log-prob of token t comes from position t - 1
            logps = sequence_logps(per_token[:, -mask.size(1):], mask, self.ld_alpha)
            if self.precompute_ref_logps:
                ref = (inputs["ref_chosen_logps"], inputs["ref_rejected_logps"])
            else:  # TRL's own reference pass: the frozen copy, or the base with adapters off
                ref = self.compute_ref_log_probs(
                    self.model if self.ref_model is None else self.ref_model, inputs)
            chosen, rejected = (logps - torch.cat(ref).to(logps.dtype)).chunk(2)
            _log_rewards(self, self.beta * chosen.detach(), self.beta * rejected.detach())
            return soft_dpo_loss(chosen - rejected, labels.to(logps.dtype), self.beta).mean()

    return SoftLabelDPOTrainer


def _with_labels(collate: Any) -> Any:
    """A collator that also hands each pair's soft label to the loss."""
    import torch

    def collate_with_labels(examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(examples)
        batch["soft_label"] = torch.tensor([e["soft_label"] for e in examples])
        return batch

    return collate_with_labels


def _log_rewards(trainer: Any, chosen: Any, rejected: Any) -> None:
    """Log the implicit rewards as TRL's own loss does, one entry per pair rather than per
    batch, so that the logged means are exact shares."""
    metrics = trainer._metrics["train" if trainer.model.training else "eval"]
    chosen = trainer.accelerator.gather_for_metrics(chosen)
    rejected = trainer.accelerator.gather_for_metrics(rejected)
    metrics["rewards/chosen"].extend(chosen.tolist())
    metrics["rewards/rejected"].extend(rejected.tolist())
    metrics["rewards/accuracies"].extend((chosen > rejected).float().tolist())
    metrics["rewards/margins"].extend((chosen - rejected).tolist())
