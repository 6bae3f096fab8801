"""Training that ends as planned at a budget or a deadline: at the end of the step in which
it is reached, with a checkpoint that the same command, run again, resumes from."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


class StopWhenSpent(TrainerCallback):  # type: ignore[misc]
    """Stops training at the end of the step in which the budget (a judge's requests, tokens,
    cost) or the deadline is reached, and saves a checkpoint then, whatever `save_steps` says.
    `reason` says why, or is None while training goes on."""

    def __init__(self, budget: Any, reward: Any = None):
        self.budget, self.reward = budget, reward
        self.reason: str | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.max_steps and state.global_step >= state.max_steps:
            return control  # the last step: the run is whole, whatever the budget says now
        reason = getattr(self.reward, "stopped_reason", None) or self.budget.exhausted()
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
