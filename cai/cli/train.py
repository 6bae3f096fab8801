"""Commands that train with TRL on cai's data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from cai.cli.options import (
    CONSTITUTION_HELP,
    OVERWRITE,
    console,
    err,
    model_options,
    run,
)
from cai.errors import CaiError

if TYPE_CHECKING:
    from cai.training.grpo import GRPO
    from cai.training.method import Method

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
        click.option("--deadline", default=None, help="Stop at the end of the step that "
                     "reaches a duration (45m, 8h) or a clock time (06:30), with a checkpoint; "
                     "the same command, run again, resumes."),
        OVERWRITE,
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
    from cai.training.sft import SFT

    _train(SFT(), **options)


@train_group.command("dpo")
@train_options
@MERGE
@MIN_MARGIN
def train_dpo(min_margin: float, **options: Any) -> None:
    """DPO on preference pairs (prefs.jsonl), weighted by the judge's soft labels."""
    from cai.training.dpo import DPO

    _train(DPO(min_margin=min_margin), **options)


@train_group.command("reward")
@train_options
@MIN_MARGIN
def train_reward(min_margin: float, **options: Any) -> None:
    """A reward model on preference pairs."""
    from cai.training.reward import RewardModel

    _train(RewardModel(min_margin=min_margin), **options)


@train_group.command("grpo")
@click.option("--prompts", "prompts_file", required=True, type=click.Path(dir_okay=False),
              help="Prompts (.jsonl, .csv, .txt); a `reference` field gives reference answers.")
@click.option("--model", default="local", show_default=True,
              help="Start from: local, a checkpoint folder, or hf:FOLDER.")
@click.option("--judge", "judge_specs", default=["local"], show_default=True, multiple=True,
              help="The judge that gives the reward; more than once for a panel of judges, "
              "whose mean is the reward.")
@click.option("--panel-weights", default=None, type=click.Path(dir_okay=False),
              help="Weigh a panel's judges: the panel_weights.json `cai eval judge` wrote.")
@click.option("--constitution", default="harmless", show_default=True, help=CONSTITUTION_HELP)
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--reward", type=click.Choice(["pairwise", "reference", "score"]),
              default="pairwise", show_default=True,
              help="Against the group's other completions, against a reference answer, or a "
              "1-10 score.")
@click.option("--reference-model", default=None, help="With --reward reference: answer the "
              "prompts that bring no reference with this model (e.g. the starting policy).")
@click.option("--length-penalty", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Subtracted from the reward in proportion to the completion's length.")
@click.option("--no-text-fallback", is_flag=True, help="With --reward score: no score read "
              "from the text where the judge gives no logprobs.")
@click.option("--lora", is_flag=True, help="Train a LoRA adapter, not every weight.")
@MERGE
@click.option("--config", default=None, type=click.Path(dir_okay=False),
              help="YAML with `trl:` (passed to GRPOConfig) and `lora:`.")
@click.option("--eval-fraction", default=0.1, show_default=True,
              type=click.FloatRange(0, 0.5), help="Share of prompts held out.")
@OVERWRITE
@model_options
def train_grpo(prompts_file: str, model: str, judge_specs: tuple[str, ...],
               panel_weights: str | None, constitution: str, out: str,
               reward: str, reference_model: str | None, length_penalty: float,
               no_text_fallback: bool, lora: bool, merge: bool, config: str | None,
               eval_fraction: float, overwrite: bool, session: Any,
               templates: str | None) -> None:
    """GRPO with the AI judge as the reward: online RLAIF."""
    import dataclasses

    from cai.templates import Templates
    from cai.training.config import check_config, read_config
    from cai.training.grpo import GRPO, RewardSettings, answer_references, check, read_prompt_rows

    if session.batch:
        raise CaiError("--batch does not go with GRPO: the reward is needed as training goes, "
                       "and a provider batch API answers within hours; drop --batch")
    path = Path(prompts_file)
    if panel_weights and len(judge_specs) < 2:
        raise CaiError("--panel-weights weighs the judges of a panel: give --judge twice or "
                       "more")
    settings = RewardSettings(judge=judge_specs[0] if len(judge_specs) == 1 else judge_specs,
                              constitution=constitution, mode=reward,
                              length_penalty=length_penalty,
                              text_fallback=not no_text_fallback,
                              reference_model=reference_model, panel_weights=panel_weights)
    rows = read_prompt_rows(path)
    train_config = read_config(Path(config) if config else None)
    check_config([GRPO.config_class()], train_config)
    check(settings, rows, path, train_config.trl)
    method = GRPO(settings, session, Templates(templates), rows)
    if session.dry_run:
        return console.print_json(data=grpo_estimate(method, Path(out), lora, config,
                                                     eval_fraction))
    if reward == "reference" and reference_model:
        # Its own session: the judge's client must first be used on TRL's event loop.
        answers = dataclasses.replace(session, clients=[], _cache=None)
        run(answers, answer_references(rows, answers.client(reference_model)))
    s = _train(method, (prompts_file,), model, out, lora, config, eval_fraction, overwrite,
               merge, data_option="--prompts",
               settings={"judge": settings.shown, "panel_weights": panel_weights,
                         "constitution": constitution, "reward": reward,
                         "reference_model": reference_model, "length_penalty": length_penalty})
    if s is not None:
        console.print(grpo_line(s["grpo"]), highlight=False)


def _train(method: Method, data: tuple[str, ...], model: str, out: str, lora: bool,
           config: str | None, eval_fraction: float, overwrite: bool, merge: bool = False,
           data_option: str = "--data", settings: dict[str, Any] | None = None,
           deadline: str | None = None) -> dict[str, Any] | None:
    """Run `train` for a command, and say how it went; the summary, where this process has
    one."""
    from cai.folders import claim
    from cai.models.budget import parse_deadline
    from cai.training.train import train

    shaped = {"model": model, "lora": lora, "merge": merge, "eval_fraction": eval_fraction,
              "min_margin": method.min_margin, **(settings or {})}
    s = train(method, [Path(d) for d in data], model, Path(out), lora=lora,
              config=Path(config) if config else None, merge=merge,
              eval_fraction=eval_fraction, deadline=parse_deadline(deadline),
              claim=lambda: claim(Path(out), f"train {method.kind}", {
                  data_option: data, "--config": config}, settings=shaped, overwrite=overwrite))
    if s is None:
        return None  # not the main process of an `accelerate launch` run
    losses = [x["loss"] for x in s["losses"]]
    loss = f", loss {losses[0]:.4f} -> {losses[-1]:.4f}" if losses else ""
    metric = s["heldout"].get(method.heldout_metric)
    shown = f"; held-out {method.heldout_metric} {metric:.4f}" if metric is not None else ""
    console.print(f"[bold]train {method.kind}[/]: {s['steps']} steps on {s['train_rows']} rows"
                  f"{loss}{shown}; {s['wall_seconds']:.0f}s -> {out}", highlight=False)
    for note in s["notes"]:
        err.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    if s["stopped_reason"]:
        err.print(f"[yellow]stopped:[/] {escape(s['stopped_reason'])}; its checkpoint is kept: "
                  "run the same command again to go on", soft_wrap=True)
    return s


def grpo_line(g: dict[str, Any]) -> str:
    """The judge's side of a GRPO run, in one line: its calls, and the guards over the steps."""
    steps = g["steps"]

    def mean(key: str) -> str:
        values = [s[key] for s in steps if key in s]
        return f"{sum(values) / len(values):.2f}" if values else "-"

    return (f"judge {g['judge']} ({g['reward']}): {g['judge_requests']} requests, "
            f"{g['judge_cache_hits']} from the cache; over the steps: reward std "
            f"{mean('reward_std')}, position flips {mean('flip_rate')}, reward-length "
            f"correlation {mean('length_corr')}; each completion in completions.jsonl")


def grpo_estimate(method: GRPO, out: Path, lora: bool, config: str | None,
                  eval_fraction: float) -> dict[str, Any]:
    """`cai train grpo --dry-run`: the judge's requests, tokens and cost for the run asked."""
    from cai.training.config import read_config, trl_args
    from cai.training.data import split_heldout
    from cai.training.grpo import estimate, make_reward

    args, trl_settings = trl_args(method, out, lora, read_config(Path(config) if config
                                                                 else None))
    longest = "word " * args.max_completion_length
    # References still to be made by --reference-model count at the longest length.
    rows = [{**r, "reference": r.get("reference") or longest} for r in method.prompts]
    reward = make_reward(method.settings, method.session, method.templates, rows, trl_settings)
    return run(method.session, estimate(reward, split_heldout(rows, eval_fraction).train, args))
