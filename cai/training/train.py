"""Training with TRL on cai's data: SFT on revisions, DPO on judged pairs, reward models.

A run reads records in TRL's formats (provenance beside them), splits held-out prompts off,
trains with SFTTrainer, DPOTrainer or RewardTrainer, and leaves in `--out` itself the model or
LoRA adapter, tokenizer and chat template, a model card (README.md), train_summary.json,
heldout.jsonl and the trained model's heldout_answers.jsonl.

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
from cai.training.data import Split, prompt_key, read_rows, split_heldout, to_dataset
from cai.training.dpo import soft_label_dpo_trainer


def train(kind: str, data: Sequence[Path], model: str, out: Path, *, lora: bool = False,
          config: Path | None = None, merge: bool = False, eval_fraction: float = 0.1,
          min_margin: float = 0.0, answer_sampling: Sampling | None = None,
          callbacks: Sequence[Any] = (), grpo: Any = None,
          claim: Callable[[], None] | None = None,
          deadline: float | None = None) -> dict[str, Any] | None:
    """Train `model` on `data` into `out`; return the run summary (train_summary.json).

    Every input is checked first; then the main process calls `claim` (the CLI's check that
    `out` is this run's folder), and only then is a model loaded. Under `accelerate launch`
    only the main process writes the files and gets the summary; the others return None.
    """
    started = time.monotonic()
    # TRL and peft still read transformers' old name for it; the warning is theirs to act on,
    # and would otherwise greet every run.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                            category=FutureWarning)
    if merge and (not lora or kind == "reward"):
        raise CaiError("--merge merges a LoRA adapter into its base: it needs --lora, and "
                       "applies to sft and dpo")
    settings = read_config(config)
    # GRPO reads prompts (checked and read by the command); the others TRL's records.
    rows, dropped = (grpo.rows, 0) if kind == "grpo" else read_rows(data, kind, min_margin)
    split = split_heldout(rows, eval_fraction)
    args, trl_settings = trl_args(kind, out, lora, settings)
    peft, lora_settings = lora_config(kind, settings) if lora else (None, None)
    if claim is not None and args.process_index == 0:
        claim()
    with args.main_process_first(desc="preparing the model"):  # one process converts `local`
        start = checkpoints.resolve_model(model)
    reward = None
    if kind == "grpo":
        from cai.training.grpo import completions_log, make_reward

        # Process 0 cuts the log back to the checkpoint before any other appends to it.
        with args.main_process_first(desc="preparing the completions log"):
            log = completions_log(out, last_checkpoint(args)) if args.process_index == 0 \
                else out / "completions.jsonl"
        reward = make_reward(grpo.settings, grpo.session, grpo.templates, rows, trl_settings,
                             log)
    from cai.models.budget import Budget
    from cai.training.stopping import StopWhenSpent

    # GRPO's judge spends from the command's budget, which holds its deadline too.
    stop = StopWhenSpent(grpo.session.budget if kind == "grpo" else Budget(deadline=deadline),
                         reward)
    fit = _fit(kind, start, split, args, peft, [*callbacks, stop], reward)
    gc.collect()
    soft_labels_used = fit.pop("soft_labels_used")
    if not fit.pop("main"):
        return None
    notes = [split.note] if split.note else []
    if kind == "dpo" and not soft_labels_used and any("soft_label" in r for r in rows):
        notes.append("soft labels not used: they apply to the sigmoid loss only, and this "
                     "run's trl: settings choose another")
    summary = {
        "kind": kind, "model": model, "start": str(start),
        "from_embedded": checkpoints.from_embedded(start), "method": "lora" if lora else "full",
        "merged": merge, "data": [card.file_info(p) for p in data], "rows": len(rows),
        "dropped_low_margin": dropped, "min_margin": min_margin, "train_rows": len(split.train),
        "heldout_rows": len(split.heldout), "notes": notes,
        "constitutions": card.constitutions(rows),
        **fit, "trl": trl_settings, "lora": lora_settings, "versions": _versions(),
        # Stopped by the budget or the deadline: its checkpoint is kept, and the same
        # command, run again, goes on from it.
        "stopped_reason": stop.reason,
    }
    if kind == "grpo":
        summary["grpo"] = grpo.summary(reward, fit.pop("log_history"))
    if kind == "dpo" and split.heldout:
        summary["implicit_reward_accuracy"] = fit["heldout"].get("eval_rewards/accuracies")
    if merge:
        checkpoints.merge_adapter(out)
    if stop.reason is None:  # a stopped run's answers would be a partial model's
        _write_results(out, summary, split.heldout, answer_sampling)
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    write_json(out / "train_summary.json", summary)
    (out / "README.md").write_text(card.model_card(summary), encoding="utf-8")
    return summary


def _write_results(out: Path, summary: dict[str, Any], heldout: list[dict[str, Any]],
                   sampling: Sampling | None) -> None:
    """The held-out rows, and the trained model's answers to their prompts."""
    write_jsonl(out / "heldout.jsonl", heldout)
    if summary["kind"] != "reward" and heldout:  # a reward model scores answers, writes none
        prompts = list({prompt_key(r): r for r in heldout}.values())
        default = LOCAL_SAMPLING if summary["from_embedded"] else Sampling()
        summary["heldout_answers"] = card.write_answers(
            out, prompts, sampling or default.with_(seed=0))


def _fit(kind: str, start: Path, split: Split, args: Any, peft: Any,
         callbacks: Sequence[Any], reward: Any = None) -> dict[str, Any]:
    """Train and save; return what the summary needs, so that the trainer can be let go."""
    tokenizer = checkpoints.load_tokenizer(start)
    policy = checkpoints.load_policy(kind, start, peft is not None)
    trainer = make_trainer(kind, policy, tokenizer, split, args, peft, callbacks, reward)
    # A run that saves checkpoints (`save_strategy` in `trl:`) and was stopped goes on from
    # the last one: the same command, run again.
    resumed = last_checkpoint(args)
    trainer.train(resume_from_checkpoint=resumed)
    stopped = any(getattr(c, "reason", None) for c in callbacks)
    metrics = trainer.evaluate() if split.heldout and not stopped else {}
    if reward is not None:  # the judge's connections belong to TRL's event loop: closed there
        _close_on(trainer, reward.judge.client)
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
        "heldout": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "example": first_example(trainer.train_dataset, kind, tokenizer),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "parameters": sum(p.numel() for p in params),
        "processes": trainer.accelerator.num_processes, "main": trainer.is_world_process_zero(),
        "soft_labels_used": bool(getattr(trainer, "uses_soft_labels", False)),
        "resumed_from": Path(resumed).name if resumed else None,
        **({"log_history": list(trainer.state.log_history)} if kind == "grpo" else {}),
    }


def _close_on(trainer: Any, client: Any) -> None:
    import asyncio

    loop = getattr(trainer, "async_loop", None)
    if loop is not None:
        asyncio.run_coroutine_threadsafe(client.aclose(), loop).result()


def last_checkpoint(args: Any) -> str | None:
    """The latest whole checkpoint a stopped run saved in its output folder, if any.

    The Trainer writes `trainer_state.json` last; a folder without it (or with it cut short)
    is a save that a kill interrupted, removed here so that training saves it again."""
    import json

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


def make_trainer(kind: str, policy: Any, tokenizer: Any, split: Split, args: Any, peft: Any,
                 callbacks: Sequence[Any] = (), reward: Any = None) -> Any:
    """The TRL trainer for `kind`, with the held-out rows as its evaluation set."""
    import copy

    from trl import GRPOTrainer, RewardTrainer, SFTTrainer

    common = {"model": policy, "args": args, "train_dataset": to_dataset(split.train, kind),
              "eval_dataset": to_dataset(split.heldout, kind) if split.heldout else None,
              "processing_class": tokenizer, "peft_config": peft, "callbacks": list(callbacks)}
    if kind == "sft":
        return SFTTrainer(**common)
    if kind == "grpo":
        return GRPOTrainer(reward_funcs=[reward], **common)
    if kind == "reward":
        return RewardTrainer(**common)
    ref = None  # with LoRA the reference is the base model, adapters switched off
    if peft is None:
        # A frozen copy of the starting weights, made here: left alone, TRL would load the
        # reference again from the path in the model's config, which need not hold them (a
        # merged adapter, or a folder written to since).
        ref = copy.deepcopy(policy).eval().requires_grad_(False)
    return soft_label_dpo_trainer()(ref_model=ref, **common)


def first_example(dataset: Any, kind: str, tokenizer: Any) -> dict[str, str]:
    """The first training example as the model sees it: the prompt the chat template made
    (with any system prompt it adds) and the tokens the loss is taken on."""
    row = dataset[0]
    if kind == "grpo":  # the policy writes the completions as it trains
        return {"prompt": str(row["prompt"])}
    decode = tokenizer.decode
    if kind == "sft":  # labels are the input ids, with -100 where no loss is taken
        pairs = list(zip(row["input_ids"], row.get("labels") or row["input_ids"], strict=True))
        return {"prompt": decode([t for t, label in pairs if label == -100]),
                "trained_on": decode([t for t, label in pairs if label != -100])}
    if kind == "dpo":
        return {"prompt": decode(row["prompt_ids"]), "chosen": decode(row["chosen_ids"]),
                "rejected": decode(row["rejected_ids"])}
    return {"chosen": decode(row["chosen_ids"]), "rejected": decode(row["rejected_ids"])}


def _versions() -> dict[str, str]:
    from importlib import metadata

    return {p: metadata.version(p) for p in ("torch", "transformers", "trl", "peft")}
