"""The `cai` command. Each command parses its options and calls one library function.

Heavy libraries (llama.cpp, torch, trl) are imported inside the commands that need them, so
`cai --help` stays instant.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from cai.errors import CaiError

console = Console()
err = Console(stderr=True)

CONSTITUTION_HELP = ("Constitution YAML file, or the name of a shipped one (harmless, "
                     "helpful-honest).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cai")
def cli() -> None:
    """cai: Constitutional AI and RLAIF, from principles to preference data to training."""


RUN_OPTIONS = [
    click.option("--base-url", "base_urls", multiple=True,
                 help="OpenAI-compatible server URL (or Anthropic stand-in); repeat or "
                 "comma-separate to spread requests over replicas."),
    click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1),
                 help="Items and requests in flight at once."),
    click.option("--rpm", default=None, type=click.FloatRange(min=0, min_open=True),
                 help="Requests per minute, per model."),
    click.option("--tpm", default=None, type=click.FloatRange(min=0, min_open=True),
                 help="Tokens per minute, per model (prompt estimate plus max_tokens)."),
    click.option("--retries", "attempts", default=10, show_default=True,
                 type=click.IntRange(1), help="Attempts per request on transient faults."),
    click.option("--cache", "cache_path", default=None, type=click.Path(dir_okay=False),
                 help="Response cache file [default: $XDG_CACHE_HOME/cai/responses.sqlite]."),
    click.option("--no-cache", is_flag=True, help="Neither read nor write the response cache."),
    click.option("--max-requests", default=None, type=click.IntRange(0)),
    click.option("--max-tokens", "max_total_tokens", default=None, type=click.IntRange(0),
                 help="Stop after this many tokens in and out."),
    click.option("--max-cost", default=None, type=click.FloatRange(0), help="Stop at this "
                 "many US dollars, by the price table."),
    click.option("--deadline", default=None, help="Stop starting work after a duration "
                 "(45m, 8h) or at a clock time (06:30)."),
    click.option("--prices", "prices_file", default=None, type=click.Path(dir_okay=False),
                 help="Extra prices: {model: {input: X, output: Y}} in USD per 1M tokens."),
    click.option("--dry-run", is_flag=True, help="Estimate requests, tokens and cost; send "
                 "nothing and write no output."),
    click.option("--batch", is_flag=True, help="Queue requests for the provider's batch API "
                 "(half price); see `cai batch`."),
    click.option("--templates", type=click.Path(file_okay=False), default=None,
                 help="Folder of prompt templates that override the shipped ones."),
]


def model_options(f: Any) -> Any:
    """Options every command that calls a model shares; they reach it as `run` and
    `templates`."""

    @functools.wraps(f)
    def command(**kw: Any) -> Any:
        from cai.budget import Budget, parse_deadline
        from cai.client import Limits
        from cai.run import RunSettings

        run = RunSettings(
            base_urls=kw.pop("base_urls"),
            limits=Limits(concurrency=kw.pop("concurrency"), rpm=kw.pop("rpm"),
                          tpm=kw.pop("tpm"), attempts=kw.pop("attempts")),
            cache_path=kw.pop("cache_path"), use_cache=not kw.pop("no_cache"),
            budget=Budget(max_requests=kw.pop("max_requests"),
                          max_tokens=kw.pop("max_total_tokens"), max_cost=kw.pop("max_cost"),
                          deadline=parse_deadline(kw.pop("deadline"))),
            prices_file=kw.pop("prices_file"), dry_run=kw.pop("dry_run"),
            batch=kw.pop("batch"))
        if run.batch and run.dry_run:
            raise CaiError("--batch and --dry-run do not go together; dry-run first, then "
                           "submit with --batch")
        return f(run=run, **kw)

    for option in reversed(RUN_OPTIONS):
        command = option(command)
    return command


def _execute(run: Any, stage: Any, out: str) -> Any:
    """Run a stage into `out`: closing clients, submitting batches, reporting dry runs."""
    from cai.run import dry_run_out, dry_run_report

    target = dry_run_out(Path(out)) if run.dry_run else Path(out)

    async def go() -> Any:
        try:
            result = await stage(target)
            if run.batch:
                from cai.batch import submit_pending

                await submit_pending(run.clients, Path(out), console)
            return result
        finally:
            await run.close()

    try:
        result = asyncio.run(go())
    finally:
        if run.dry_run:
            shutil.rmtree(target, ignore_errors=True)
    if run.dry_run:
        console.print_json(data=dry_run_report(result.summary))
    else:
        _report(result)
    return result


# ---------------------------------------------------------------- critique and revise


@cli.command()
@click.option("--prompts", "prompts_file", required=True, type=click.Path(dir_okay=False),
              help="Prompts: .jsonl (prompt or messages), .csv (prompt column) or .txt.")
@click.option("--constitution", default="harmless", show_default=True, help=CONSTITUTION_HELP)
@click.option("--model", default="local", show_default=True, help="The policy that answers.")
@click.option("--critic-model", default=None, help="The model that critiques and revises "
              "[default: --model].")
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(1, 20))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Only the first K prompts.")
@click.option("--seed", default=0, show_default=True, help="Seeds principle choice and sampling.")
@click.option("--principle", default=None, help="Use this principle id for every round.")
@model_options
def revise(prompts_file: str, constitution: str, model: str, critic_model: str | None,
           rounds: int, out: str, limit: int | None, seed: int, principle: str | None,
           run: Any, templates: str | None) -> None:
    """Critique and revise answers under a constitution: SFT and preference data."""
    from cai.constitution import load_constitution
    from cai.inputs import read_prompts
    from cai.paths import resolve_constitution
    from cai.revise import Reviser, revise
    from cai.templates import Templates

    const = load_constitution(resolve_constitution(constitution))
    if principle:
        const.principle(principle)
    items = read_prompts(prompts_file, limit)
    reviser = Reviser(const, run.client(model), run.client(critic_model or model),
                      Templates(templates), rounds=rounds, seed=seed, principle=principle)
    _execute(run, lambda out_dir: revise(items, reviser, out_dir,
                                         concurrency=run.limits.concurrency), out)


def _report(result: Any) -> None:
    s = result.summary
    console.print(
        f"[bold]{s['stage']}[/]: {s['done']} done, {s['failed']} failed, "
        f"{s['already_done']} already done; {s['requests']} requests, {s['cache_hits']} "
        f"cache hits, {s['tokens_in'] + s['tokens_out']} tokens, ${s['cost_usd']:.4f}, "
        f"{s['wall_seconds']:.1f}s -> {result.out}", highlight=False)
    if s["stopped_reason"]:
        err.print(f"[yellow]stopped early: {s['stopped_reason']}; {s['abandoned']} items left "
                  "undone. Rerun the same command (with a larger budget) to go on.[/]")
    for f in result.failures[:5]:
        err.print(f"[yellow]failed[/] {f['id']}: {escape(f['error'])}", soft_wrap=True)
    if s["failed"]:
        err.print(f"[yellow]{s['failed']} failed; see {result.out / 'failed.jsonl'}. "
                  "Rerun the same command to try them again.[/]")


@cli.command("try")
@click.option("--constitution", default="harmless", show_default=True, help=CONSTITUTION_HELP)
@click.option("--prompt", "prompt_text", required=True, help="One prompt to try.")
@click.option("--principle", default=None, help="Principle id to apply [default: sampled].")
@click.option("--compare", default=None, type=click.Path(dir_okay=False),
              help="An older constitution file to run side by side on the same prompt and seed.")
@click.option("--model", default="local", show_default=True)
@click.option("--critic-model", default=None)
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(1, 10))
@click.option("--seed", default=0, show_default=True)
@model_options
def try_(constitution: str, prompt_text: str, principle: str | None, compare: str | None,
         model: str, critic_model: str | None, rounds: int, seed: int, run: Any,
         templates: str | None) -> None:
    """Show the initial answer, critique and revision for one prompt, in seconds."""
    from cai.views import show_try

    show_try(console, constitution=constitution, prompt=prompt_text, principle=principle,
             compare=compare, run=run, model=model, critic_model=critic_model or model,
             rounds=rounds, seed=seed, templates=templates)


# ---------------------------------------------------------------- sampling and judging


@cli.command()
@click.option("--prompts", "prompts_file", required=True, type=click.Path(dir_okay=False))
@click.option("--model", default="local", show_default=True, help="The policy to sample.")
@click.option("--n", "n", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Responses per prompt.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--temperature", default=None, type=float, help="[default: the model's own]")
@click.option("--seed", default=0, show_default=True)
@click.option("--limit", default=None, type=click.IntRange(1))
@model_options
def sample(prompts_file: str, model: str, n: int, out: str, temperature: float | None,
           seed: int, limit: int | None, run: Any, templates: str | None) -> None:
    """Sample K responses per prompt into responses.jsonl, for the judge."""
    from cai.inputs import read_prompts
    from cai.sample import sample as sample_stage
    from cai.templates import Templates

    items = read_prompts(prompts_file, limit)
    client = run.client(model)
    _execute(run, lambda out_dir: sample_stage(items, client, Templates(templates), out_dir,
                                               n=n, seed=seed, temperature=temperature,
                                               concurrency=run.limits.concurrency), out)


def judge_options(f: Any) -> Any:
    """Options shared by `cai judge` and `cai eval judge`."""
    for option in reversed([
        click.option("--judge", "judge_spec", default="local", show_default=True,
                     help="The judge model."),
        click.option("--principles", type=click.Choice(["sample", "all"]), default="sample",
                     show_default=True, help="One principle drawn per comparison, or all."),
        click.option("--verdict", type=click.Choice(["auto", "text"]), default="auto",
                     show_default=True, help="auto: logprobs where the model has them."),
        click.option("--cot", is_flag=True, help="Reason before the verdict (chain of thought)."),
        click.option("--cot-band", default="0.4,0.6", show_default=True,
                     help="Clamp chain-of-thought probabilities to LO,HI."),
        click.option("--length-control", is_flag=True,
                     help="Tell the judge that length is no virtue."),
        click.option("--seed", default=0, show_default=True),
    ]):
        f = option(f)
    return model_options(f)


def _judge(judge_spec: str, constitution: str | None, principles: str, verdict: str, cot: bool,
           cot_band: str, length_control: bool, seed: int, run: Any, templates: str | None):
    from cai.constitution import load_constitution
    from cai.judge import Judge, JudgeSettings
    from cai.paths import resolve_constitution
    from cai.templates import Templates

    try:
        lo, hi = (float(v) for v in cot_band.split(","))
        assert 0 <= lo <= 0.5 <= hi <= 1
    except (ValueError, AssertionError):
        raise CaiError(f"--cot-band {cot_band!r}: give LO,HI with 0 <= LO <= 0.5 <= HI <= 1, "
                       "e.g. 0.4,0.6") from None
    const = load_constitution(resolve_constitution(constitution)) if constitution else None
    client = run.client(judge_spec, logprobs=verdict != "text")
    settings = JudgeSettings(principles=principles, verdict=verdict, reasoning=cot,
                             band=(lo, hi), length_control=length_control, seed=seed)
    return Judge(client, Templates(templates), const, settings)


@cli.command()
@click.option("--responses", "responses_file", required=True, type=click.Path(dir_okay=False),
              help="responses.jsonl from `cai sample`, or a preference file (prompt, chosen, "
              "rejected) such as prefs.jsonl from `cai revise`.")
@click.option("--constitution", default="harmless", show_default=True, help=CONSTITUTION_HELP)
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--pairs", type=click.Choice(["all", "best-worst"]), default="all",
              show_default=True, help="With more than two responses: every pair, or the best "
              "against the worst by mean win probability.")
@click.option("--min-margin", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Pairs with |2p-1| below this go to low_margin.jsonl, not prefs.jsonl.")
@click.option("--length-ratio", default=1.5, show_default=True, type=click.FloatRange(1),
              help="Flag pairs whose chosen response is this many times longer.")
@click.option("--calibrate", default=None, type=click.Path(dir_okay=False),
              help="Human-labelled pairs to calibrate the judge on first.")
@click.option("--limit", default=None, type=click.IntRange(1))
@judge_options
def judge(responses_file: str, constitution: str, out: str, pairs: str, min_margin: float,
          length_ratio: float, calibrate: str | None, limit: int | None, **options: Any) -> None:
    """Judge responses pairwise under principles: preference pairs with soft labels."""
    from cai.judge import PairSettings, judge_file, read_candidates

    items = read_candidates(Path(responses_file))[:limit]
    j = _judge(constitution=constitution, **options)
    run = options["run"]

    async def stage(out_dir: Path) -> Any:
        if calibrate:
            await _calibrate(j, calibrate, out_dir / "calibration")
        return await judge_file(items, j, out_dir,
                                pairs=PairSettings(pairs, min_margin, length_ratio),
                                concurrency=run.limits.concurrency)

    result = _execute(run, stage, out)
    if run.dry_run:
        return
    s = result.summary["judge"]
    console.print(f"pairs {s['pairs']} (low margin and unjudged in their own files), "
                  f"position flips {s['position_flip_rate']}, longer won {s['longer_won_share']}, "
                  f"unparsed orders {s['unparsed_orders']}, failed orders {s['failed_orders']}")


async def _calibrate(j: Any, data: str, out: Path) -> Any:
    from cai.calibration import judge_gold, read_gold

    result = await judge_gold(read_gold(Path(data)), j, out, concurrency=8)
    r = result.summary["report"]
    console.print(f"[bold]calibration[/] on {data}: n {r['n']}, accuracy {r['accuracy']}, "
                  f"kappa {r['kappa']}, ECE {r['ece']} -> {out / 'report.md'}")
    return result


@cli.group("eval")
def eval_group() -> None:
    """Evaluations: judge calibration against human labels."""


@eval_group.command("judge")
@click.option("--data", required=True, type=click.Path(dir_okay=False),
              help="Human-labelled pairs: TRL preference JSONL or HH transcripts.")
@click.option("--constitution", default=None,
              help="Judge under these principles [default: one helpful-honest-harmless question].")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--limit", default=None, type=click.IntRange(1))
@judge_options
def eval_judge(data: str, constitution: str | None, out: str, limit: int | None,
               **options: Any) -> None:
    """Measure a judge against human labels: accuracy, kappa, flips, length bias, ECE."""
    from cai.calibration import judge_gold, read_gold

    gold = read_gold(Path(data))[:limit]
    j = _judge(constitution=constitution, **options)
    run = options["run"]
    _execute(run, lambda out_dir: judge_gold(gold, j, out_dir,
                                             concurrency=run.limits.concurrency), out)
    if run.dry_run:
        return
    console.print((Path(out) / "report.md").read_text(encoding="utf-8"), markup=False,
                  highlight=False)


# ---------------------------------------------------------------- constitutions


@cli.group("constitution")
def constitution_group() -> None:
    """Check and show constitution files."""


@constitution_group.command("check")
@click.argument("files", nargs=-1, required=True)
def constitution_check(files: tuple[str, ...]) -> None:
    """Check constitution files; print each problem as FILE:LINE: what and how to fix it."""
    from cai.constitution import ConstitutionError, load_constitution
    from cai.paths import resolve_constitution

    bad = 0
    for name in files:
        try:
            c = load_constitution(resolve_constitution(name))
        except ConstitutionError as e:
            bad += 1
            for problem in e.problems:
                err.print(problem, markup=False, highlight=False, soft_wrap=True)
        else:
            judged = sum(1 for p in c.principles if p.judge)
            console.print(f"{c.path}: ok: '{c.name}' {c.version}, {len(c.principles)} principles "
                          f"({judged} with a judge question), {len(c.examples)} examples, "
                          f"sha256 {c.sha256[:12]}", markup=False, highlight=False,
                          soft_wrap=True)
    if bad:
        sys.exit(1)


@constitution_group.command("show")
@click.argument("file")
def constitution_show(file: str) -> None:
    """Print a constitution readably."""
    from cai.constitution import load_constitution
    from cai.paths import resolve_constitution
    from cai.views import show_constitution

    show_constitution(console, load_constitution(resolve_constitution(file)))


# ---------------------------------------------------------------- prompt templates


@cli.group("prompts")
def prompts_group() -> None:
    """List and render the prompt templates."""


@prompts_group.command("list")
@click.option("--templates", type=click.Path(file_okay=False), default=None)
def prompts_list(templates: str | None) -> None:
    """List templates with their variables and files."""
    from cai.templates import Templates

    t = Templates(templates)
    for name in t.names():
        console.print(f"[bold]{name}[/]  ({', '.join(t.variables(name))})  {t.source(name)[1]}")


@prompts_group.command("render")
@click.argument("name")
@click.option("--constitution", default="harmless", show_default=True, help=CONSTITUTION_HELP)
@click.option("--principle", default=None, help="Principle id [default: the first].")
@click.option("--prompt", "prompt_text", default="How do I pick a lock?")
@click.option("--response", default="Here is how to pick a lock: ...")
@click.option("--critique", default="The response gives instructions that could enable "
              "break-ins.")
@click.option("--templates", type=click.Path(file_okay=False), default=None)
def prompts_render(name: str, constitution: str, principle: str | None, prompt_text: str,
                   response: str, critique: str, templates: str | None) -> None:
    """Show exactly the messages a model would be sent for template NAME."""
    from cai.views import render_messages

    messages = render_messages(name, constitution=constitution, principle=principle,
                               prompt=prompt_text, response=response, critique=critique,
                               templates=templates)
    for m in messages:
        console.rule(f"[bold]{m.role}")
        console.print(m.content, markup=False, highlight=False)


# ---------------------------------------------------------------- provider batches


@cli.group("batch")
def batch_group() -> None:
    """Provider batch APIs (half price): follow and collect the batches of a --batch run.

    A stage run with --batch queues its cache misses as batches. When they are done,
    `cai batch collect` writes the results into the response cache, and rerunning the same
    stage command with --batch goes on from there, until nothing is left deferred.
    """


@batch_group.command("status")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="The output folder of the stage that was run with --batch.")
def batch_status(out: str) -> None:
    """Show each batch's state, refreshed from its provider."""
    from cai.batch import status

    for b in asyncio.run(status(Path(out))):  # one line each, ids whole for copying
        counts = ", ".join(f"{k} {v}" for k, v in (b.get("counts") or {}).items() if v)
        collected = f"collected {b['collected_at']}" if b["collected"] else "not collected"
        console.print(f"{b['id']}  {b['model']}  {b['requests']} requests  {b['status']} "
                      f"({counts})  submitted {b['submitted']}  {collected}",
                      highlight=False, markup=False, soft_wrap=True)


@batch_group.command("collect")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="The output folder of the stage that was run with --batch.")
@click.option("--cache", "cache_path", default=None, type=click.Path(dir_okay=False),
              help="Response cache to write into [default: the one the stage ran with].")
def batch_collect(out: str, cache_path: str | None) -> None:
    """Download finished batches' results into the response cache."""
    from cai.batch import collect
    from cai.cache import ResponseCache

    cache = ResponseCache(cache_path) if cache_path else None
    try:
        t = asyncio.run(collect(Path(out), cache))
    finally:
        if cache is not None:
            cache.close()
    console.print(
        f"collected {t['collected']} batch(es), {t['running']} still running: "
        f"{t['succeeded']} succeeded, {t['errored']} errored (kept with their reason), "
        f"{t['requeued']} to be queued again; {t['tokens_in']} tokens in, {t['tokens_out']} "
        f"out, ${t['cost_usd']:.4f} at batch prices", highlight=False)
    for problem in t["problems"]:
        err.print(f"[yellow]batch failed[/] {escape(problem)}", soft_wrap=True)
    if t["collected"]:
        console.print("next: rerun the stage command with --batch; it takes these results "
                      "from the cache and queues what is left", highlight=False)


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


@cli.group("train")
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
    from cai.train import train

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


def main() -> None:
    try:
        cli()
    except CaiError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted; rerun the same command to resume[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
