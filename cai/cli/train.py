"""Commands that train with TRL on cai's data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from cai.cli.options import (
    console,
    err,
)

# ---------------------------------------------------------------- training


def train_options(f: Any) -> Any:
    """Options every `cai train` command shares."""
    for option in reversed([
        click.option("--data", multiple=True, required=True, type=click.Path(dir_okay=False),
                     help="Records in TRL's format, e.g. from `cai revise` or `cai judge`; "
                     "repeat for several files."),
        click.option("--model", default="local", show_default=True,
                     help="Start from: local, a checkpoint folder, or hf:FOLDER."),
        click.option("--out", required=True, type=click.Path(file_okay=False),
                     help="Folder for the trained model, its card and train_summary.json."),
        click.option("--lora", is_flag=True, help="Train a LoRA adapter, not every weight."),
        click.option("--config", default=None, type=click.Path(dir_okay=False),
                     help="YAML with `trl:` (passed to TRL's config) and `lora:` (to peft's "
                     "LoraConfig)."),
        click.option("--eval-fraction", default=0.1, show_default=True,
                     type=click.FloatRange(0, 0.5), help="Share of prompts held out."),
    ]):
        f = option(f)
    return f


MERGE = click.option("--merge", is_flag=True,
                     help="With --lora: merge the adapter into its base and save a plain model.")
MIN_MARGIN = click.option("--min-margin", default=0.0, show_default=True,
                          type=click.FloatRange(0, 1),
                          help="Leave out pairs the judge separated by less than this margin.")


@click.group("train")
def train_group() -> None:
    """Train with TRL on cai's data: LoRA or full, on a CPU or under accelerate launch."""


@train_group.command("sft")
@train_options
@MERGE
def train_sft(**options: Any) -> None:
    """Supervised fine-tuning on prompt/completion records (sft.jsonl of `cai revise`)."""
    _train("sft", **options)


@train_group.command("dpo")
@train_options
@MERGE
@MIN_MARGIN
def train_dpo(**options: Any) -> None:
    """DPO on preference pairs (prefs.jsonl), weighted by the judge's soft labels."""
    _train("dpo", **options)


@train_group.command("reward")
@train_options
@MIN_MARGIN
def train_reward(**options: Any) -> None:
    """A reward model on preference pairs."""
    _train("reward", **options)


def _train(kind: str, data: tuple[str, ...], model: str, out: str, lora: bool,
           config: str | None, eval_fraction: float, merge: bool = False,
           min_margin: float = 0.0) -> None:
    from cai.training.train import train

    s = train(kind, [Path(d) for d in data], model, Path(out), lora=lora,
              config=Path(config) if config else None, merge=merge,
              eval_fraction=eval_fraction, min_margin=min_margin)
    if s is None:
        return  # not the main process of an `accelerate launch` run
    losses = [x["loss"] for x in s["losses"]]
    loss = f", loss {losses[0]:.4f} -> {losses[-1]:.4f}" if losses else ""
    held = {"sft": "eval_loss", "dpo": "eval_rewards/accuracies", "reward": "eval_accuracy"}
    metric = s["heldout"].get(held[kind])
    shown = f"; held-out {held[kind]} {metric:.4f}" if metric is not None else ""
    console.print(f"[bold]train {kind}[/]: {s['steps']} steps on {s['train_rows']} rows{loss}"
                  f"{shown}; {s['wall_seconds']:.0f}s -> {out}", highlight=False)
    for note in s["notes"]:
        err.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
