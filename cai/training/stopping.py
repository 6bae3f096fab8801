"""Training that ends as planned at a budget or a deadline: at the end of the step in which
it is reached, with a checkpoint that the same command, run again, resumes from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class StopWhenSpent(TrainerCallback):  # type: ignore[misc]
    """Stops training at the end of the step in which the budget (a judge's requests, tokens,
    cost) or the deadline is reached, and saves a checkpoint then, whatever `save_steps` says.
    `reason` says why, or is None while training goes on. (GRPO's judge spends from this
    budget: a request it refused leaves the budget saying why.)"""

    def __init__(self, budget: Any):
        self.budget = budget
        self.reason: str | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.max_steps and state.global_step >= state.max_steps:
            return control  # the last step: the run is whole, whatever the budget says now
        reason = self.budget.exhausted()
        # Under `accelerate launch` every process must stop at the same step, or the others
        # would wait for it at the next gradient exchange forever.
        if _any_process(reason is not None):
            self.reason = reason or "the budget or the deadline, reached in another process"
            control.should_training_stop = True
            control.should_save = True
        return control


def _any_process(flag: bool) -> bool:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    from accelerate import PartialState

    value = torch.tensor([float(flag)], device=PartialState().device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def last_checkpoint(args: Any) -> str | None:
    """The latest whole checkpoint a stopped run saved in its output folder, if any.

    The Trainer writes `trainer_state.json` last; a folder without it (or with it cut short)
    is a save that a kill interrupted, removed here so that training saves it again."""
    folder = Path(args.output_dir)
    if args.save_strategy == "no" or not folder.is_dir():
        return None
    whole = []
    for checkpoint in folder.glob("checkpoint-*"):
        try:
            json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
            whole.append(checkpoint)
        except (OSError, ValueError):
            shutil.rmtree(checkpoint, ignore_errors=True)
    if not whole:
        return None
    return str(max(whole, key=lambda c: int(c.name.rpartition("-")[2] or 0)))
