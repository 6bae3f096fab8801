"""What the `cai` commands share: the terminal, the options of every command that calls a
model, running a stage, and the report printed after it."""

from __future__ import annotations

import asyncio
import functools
import shutil
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


def execute(run: Any, stage: Any, out: str) -> Any:
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
        report(result)
    return result




def report(result: Any) -> None:
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


def make_judge(judge_spec: str, constitution: str | None, principles: str, verdict: str, cot: bool,
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




async def calibrate_judge(j: Any, data: str, out: Path) -> Any:
    from cai.calibration import judge_gold, read_gold

    result = await judge_gold(read_gold(Path(data)), j, out, concurrency=8)
    r = result.summary["report"]
    console.print(f"[bold]calibration[/] on {data}: n {r['n']}, accuracy {r['accuracy']}, "
                  f"kappa {r['kappa']}, ECE {r['ece']} -> {out / 'report.md'}")
    return result
