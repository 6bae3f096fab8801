"""A training run with TRL on cai's data, whatever the method (see method.py): SFT on
revisions (sft.py), DPO on judged pairs (dpo.py), a reward model (reward.py), GRPO with the
judge as the reward (grpo.py).

A run reads the method's rows (records in TRL's formats, provenance beside them), splits
held-out prompts off, trains with the method's TRL trainer, and leaves in `--out` itself the
model or LoRA adapter, tokenizer and chat template, a model card (README.md),
train_summary.json, heldout.jsonl and the trained model's heldout_answers.jsonl. A run stopped
by its budget or deadline keeps a checkpoint, and the same command, run again, resumes.

Nothing assumes one process: under `accelerate launch` every rank trains and only the main one
writes the extra files.
"""

from __future__ import annotations

import gc
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cai.chat import Sampling
from cai.errors import CaiError
from cai.models import checkpoints
from cai.models.embedded import LOCAL_SAMPLING
from cai.records.rewrite import write_json, write_jsonl
from cai.training import card
from cai.training.config import lora_config, read_config, trl_args
from cai.training.data import Split, prompt_key, split_heldout
from cai.training.method import Method


def train(method: Method, data: Sequence[Path], model: str, out: Path, *, lora: bool = False,
          config: Path | None = None, merge: bool = False, eval_fraction: float = 0.1,
          answer_sampling: Sampling | None = None, callbacks: Sequence[Any] = (),
          claim: Callable[[], None] | None = None,
          deadline: float | None = None) -> dict[str, Any] | None:
    """Train `model` on `data` by `method` (sft.SFT(), dpo.DPO(min_margin=...), ...) into
    `out`; return the run summary (train_summary.json).

    Every input is checked first; then the main process calls `claim` (the CLI's check that
    `out` is this run's folder), and only then is a model loaded. Under `accelerate launch`
    only the main process writes the files and gets the summary; the others return None.
    """
    started = time.monotonic()
    # TRL and peft still read transformers' old name for it; the warning is theirs to act on,
    # and would otherwise greet every run.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                            category=FutureWarning)
    if merge and (not lora or not method.generates):
        raise CaiError("--merge merges a LoRA adapter into its base: it needs --lora, and "
                       "applies to sft and dpo")
    settings = read_config(config)
    rows, dropped = method.rows(data)
    split = split_heldout(rows, eval_fraction)
    args, trl_settings = trl_args(method, out, lora, settings)
    peft, lora_settings = lora_config(method.generates, settings) if lora else (None, None)
    if claim is not None and args.process_index == 0:
        claim()
    with args.main_process_first(desc="preparing the model"):  # one process converts `local`
        start = checkpoints.resolve_model(model)
    from cai.training.stopping import StopWhenSpent

    stop = StopWhenSpent(method.budget(deadline))
    fit = _fit(method, start, split, args, peft, [*callbacks, stop])
    gc.collect()
    if not fit.pop("main"):
        return None
    part = fit.pop("part")  # the method's own keys, last
    notes = ([split.note] if split.note else []) + part.pop("notes", [])
    summary = {
        "kind": method.kind, "model": model, "start": str(start),
        "from_embedded": checkpoints.from_embedded(start), "method": "lora" if lora else "full",
        "merged": merge, "data": [card.file_info(p) for p in data], "rows": len(rows),
        "dropped_low_margin": dropped, "min_margin": method.min_margin,
        "train_rows": len(split.train), "heldout_rows": len(split.heldout),
        "notes": notes,
        "constitutions": card.constitutions(rows),
        **fit, "trl": trl_settings, "lora": lora_settings, "versions": _versions(),
        # Stopped by the budget or the deadline: its checkpoint is kept, and the same
        # command, run again, goes on from it.
        "stopped_reason": stop.reason, **part,
    }
    if merge:
        checkpoints.merge_adapter(out)
    if stop.reason is None:  # a stopped run's answers would be a partial model's
        _write_results(method, out, summary, split.heldout, answer_sampling)
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    write_json(out / "train_summary.json", summary)
    readme = card.model_card(summary, method.description)
    (out / "README.md").write_text(readme, encoding="utf-8")
    return summary


def _write_results(method: Method, out: Path, summary: dict[str, Any],
                   heldout: list[dict[str, Any]], sampling: Sampling | None) -> None:
    """The held-out rows, and the trained model's answers to their prompts."""
    write_jsonl(out / "heldout.jsonl", heldout)
    if method.generates and heldout:  # a reward model scores answers, writes none
        prompts = list({prompt_key(r): r for r in heldout}.values())
        default = LOCAL_SAMPLING if summary["from_embedded"] else Sampling()
        summary["heldout_answers"] = card.write_answers(
            out, prompts, sampling or default.with_(seed=0))


def _fit(method: Method, start: Path, split: Split, args: Any, peft: Any,
         callbacks: Sequence[Any]) -> dict[str, Any]:
    """Train and save; return what the summary needs, so that the trainer can be let go."""
    from cai.training.stopping import last_checkpoint

    tokenizer = checkpoints.load_tokenizer(start)
    policy = checkpoints.load_policy(start, peft is not None, method.generates)
    trainer = make_trainer(method, policy, tokenizer, split, args, peft, callbacks)
    # A run that saves checkpoints (`save_strategy` in `trl:`) and was stopped goes on from
    # the last one: the same command, run again.
    resumed = last_checkpoint(args)
    trainer.train(resume_from_checkpoint=resumed)
    stopped = any(getattr(c, "reason", None) for c in callbacks)
    metrics = trainer.evaluate() if split.heldout and not stopped else {}
    heldout = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    part = method.summary(trainer, split, heldout)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if peft is not None:
        # `hf:` finds the adapter's base through this: the folder training started from, which
        # may be an adapter itself (its own base merged in before this one was made).
        model.peft_config["default"].base_model_name_or_path = str(start)
    trainer.save_model(args.output_dir)  # every rank: FSDP and ZeRO-3 gather the weights here
    if trainer.is_world_process_zero() and not stopped:
        for checkpoint in Path(args.output_dir).glob("checkpoint-*"):
            shutil.rmtree(checkpoint)  # only for resuming: the model is saved whole now
    params = list(model.parameters())
    return {
        "steps": trainer.state.global_step,
        "losses": [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history
                   if "loss" in e],
        "heldout": heldout,
        # the first training example as the model sees it: the prompt the chat template made
        # (with any system prompt it adds) and the tokens the loss is taken on
        "example": method.example(trainer.train_dataset[0], tokenizer),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "parameters": sum(p.numel() for p in params),
        "processes": trainer.accelerator.num_processes, "main": trainer.is_world_process_zero(),
        "resumed_from": Path(resumed).name if resumed else None, "part": part,
    }


def make_trainer(method: Method, policy: Any, tokenizer: Any, split: Split, args: Any,
                 peft: Any, callbacks: Sequence[Any] = ()) -> Any:
    """The method's TRL trainer, with the held-out rows as its evaluation set."""
    return method.trainer({"model": policy, "args": args, "processing_class": tokenizer,
                           "peft_config": peft, "callbacks": list(callbacks)}, split)


def _versions() -> dict[str, str]:
    from importlib import metadata

    return {p: metadata.version(p) for p in ("torch", "transformers", "trl", "peft")}
