"""What the `cai` commands share: the terminal, the options of every command that calls a
model, running a stage, and the report printed after it."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from cai.errors import CaiError

console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def show_error(e: Exception | str) -> None:
    """A problem the user can fix, as the one `error:` line the CLI gives it."""
    from rich.markup import escape

    err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)

CONSTITUTION_HELP = ("Constitution YAML file, or the name of a shipped one (harmless, "
                     "helpful-honest).")
OVERWRITE = click.option("--overwrite", is_flag=True, help="Clear --out first (a folder cai "
                         "made): to start again, or to reuse a folder another command or other "
                         "inputs made.")
SHARD = click.option("--shard", default=None, help="Take only the K-th of N slices of the input "
                     "(K/N, by a hash of each id), to split one job over N machines; put the "
                     "outputs together with `cai data merge`.")


class DefaultGroup(click.Group):
    """A group whose first argument, when it is no subcommand's name, goes to `run`:
    `cai loop CONFIG` runs, `cai loop status RUN` reports."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


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
    """Options every command that calls a model shares; they reach it as `session` and
    `templates`."""

    @functools.wraps(f)
    def command(**kw: Any) -> Any:
        from cai.models.budget import Budget, parse_deadline
        from cai.models.client import Limits
        from cai.models.session import Session

        session = Session(
            base_urls=kw.pop("base_urls"),
            limits=Limits(concurrency=kw.pop("concurrency"), rpm=kw.pop("rpm"),
                          tpm=kw.pop("tpm"), attempts=kw.pop("attempts")),
            cache_path=kw.pop("cache_path"), use_cache=not kw.pop("no_cache"),
            budget=Budget(max_requests=kw.pop("max_requests"),
                          max_tokens=kw.pop("max_total_tokens"), max_cost=kw.pop("max_cost"),
                          deadline=parse_deadline(kw.pop("deadline"))),
            prices_file=kw.pop("prices_file"), dry_run=kw.pop("dry_run"),
            batch=kw.pop("batch"))
        return f(session=session, **kw)

    for option in reversed(RUN_OPTIONS):
        command = option(command)
    return command


def run(session: Any, job: Coroutine[Any, Any, T]) -> T:
    """Run one command's library call on the event loop, then close its models. The only
    place, with `cai batch`, that starts an event loop."""

    async def go() -> T:
        try:
            return await job
        finally:
            await session.close()

    return asyncio.run(go())


def run_and_report(session: Any, job: Coroutine[Any, Any, Any]) -> Any:
    """Run a stage command's library call, log the command in its folder, and print what it
    did."""
    result = run(session, job)
    if not session.dry_run:
        log_command(result.out)
    report(result)
    return result


def log_command(out: Path) -> None:
    """Append the command line to `out/command_log.jsonl`, for the dataset card (`cai
    report`): how the data was made, in the user's own words, credentials in URLs hidden."""
    import json
    import os
    import shlex
    import sys
    from datetime import datetime, timezone
    from importlib.metadata import version

    from cai.redact import redact_urls

    line = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": redact_urls(shlex.join(["cai", *sys.argv[1:]])), "cwd": os.getcwd(),
            "cai": version("cai-toolkit")}
    with open(out / "command_log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(line, ensure_ascii=False) + "\n")


def report(result: Any) -> None:
    """What a stage did, in a few lines: its counts, or a dry run's estimate; batches sent."""
    s = result.summary
    if "dry_run" in s:
        console.print_json(data=s["dry_run"])
        return
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
    if "batches_submitted" in s:
        batches(s["batches_submitted"], result.out)


def batches(sent: dict[str, Any], out: Path) -> None:
    for spec, n in sent["in_flight"].items():
        console.print(f"{n} requests for {spec} are in a batch not collected yet; not sent "
                      "again", highlight=False, markup=False)
    if sent["ids"]:
        console.print(f"submitted {sent['sent']} requests in {len(sent['ids'])} batch(es): "
                      f"{', '.join(sent['ids'])} -> {out / 'batches.json'}\n"
                      f"next: `cai batch status --out {out}`; when they are done, `cai batch "
                      f"collect --out {out}`, then rerun this command with --batch",
                      highlight=False, markup=False)


def judge_options(f: Any) -> Any:
    """Options shared by `cai judge` and `cai eval judge`."""
    for option in reversed([
        click.option("--judge", "judge_specs", default=["local"], show_default=True,
                     multiple=True, help="The judge model; give it more than once for a "
                     "panel of judges, whose mean probability is the soft label."),
        click.option("--panel-weights", default=None, type=click.Path(dir_okay=False),
                     help="Weigh a panel's judges by their agreement with people: the "
                     "panel_weights.json that `cai eval judge` wrote for the same judges."),
        click.option("--principles", type=click.Choice(["sample", "all"]), default="sample",
                     show_default=True, help="One principle drawn per comparison, or all."),
        click.option("--verdict", type=click.Choice(["auto", "text"]), default="auto",
                     show_default=True, help="auto: logprobs where the model has them."),
        click.option("--cot", is_flag=True, help="Reason before the verdict (chain of thought)."),
        click.option("--cot-band", default="0.4,0.6", show_default=True,
                     help="Clamp chain-of-thought probabilities to LO,HI."),
        click.option("--length-control", is_flag=True,
                     help="Tell the judge that length is no virtue."),
        click.option("--judge-constrain", type=click.Choice(["grammar", "guided-choice"]),
                     default=None, help="Limit the judge's answer to A or B on an "
                     "OpenAI-compatible server: llama.cpp's grammar or vLLM's guided choice "
                     "(local and hf: do so by themselves)."),
        click.option("--seed", default=0, show_default=True),
    ]):
        f = option(f)
    return model_options(f)


def make_judge(*, judge_specs: tuple[str, ...], constitution: Any, principles: str,
               verdict: str, cot: bool, cot_band: str, length_control: bool, seed: int,
               session: Any, templates: str | None, judge_constrain: str | None = None,
               panel_weights: str | None = None) -> Any:
    """The judge, or panel of judges, that the judge options describe, under a constitution
    already loaded: a Panel (of one, for one --judge)."""
    from cai.stages.judge import Judge, JudgeSettings
    from cai.stages.panel import Panel, read_weights
    from cai.templates import Templates

    if panel_weights and len(judge_specs) < 2:
        raise CaiError("--panel-weights weighs the judges of a panel: give --judge twice or "
                       "more")
    settings = JudgeSettings(principles=principles, verdict=verdict, reasoning=cot,
                             band=parse_band(cot_band), length_control=length_control,
                             seed=seed)
    t = Templates(templates)
    judges = [Judge(session.client(spec, logprobs=verdict != "text", constrain=judge_constrain),
                    t, constitution, settings) for spec in judge_specs]
    weights = read_weights(Path(panel_weights), [j.client.spec for j in judges]) \
        if panel_weights else None
    return Panel(judges, weights)


def parse_band(text: str) -> tuple[float, float]:
    """`--cot-band LO,HI`, with 0 <= LO <= 0.5 <= HI <= 1."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        lo, hi = -1.0, -1.0
    if not 0 <= lo <= 0.5 <= hi <= 1:
        raise CaiError(f"--cot-band {text!r}: give LO,HI with 0 <= LO <= 0.5 <= HI <= 1, "
                       "e.g. 0.4,0.6")
    return lo, hi


def calibration_line(report: dict[str, Any], data: str, out: Path) -> None:
    console.print(f"[bold]calibration[/] on {data}: n {report['n']}, judged "
                  f"{report['judged']}, unjudged {report['unjudged']}, coverage "
                  f"{report['coverage']}, accuracy {report['accuracy']} (judged only "
                  f"{report['accuracy_judged']}), kappa {report['kappa']}, ECE "
                  f"{report['ece']} -> {out / 'report.md'}")


def panel_line(p: dict[str, Any]) -> None:
    """What a panel of judges says of itself, in a few lines."""
    console.print(f"panel of {len(p['judges'])}: Fleiss' kappa {p['fleiss_kappa']} over "
                  f"{p['decided_by_all']} pairs all decided, split on {p['split']} of "
                  f"{p['comparisons']}", highlight=False, soft_wrap=True)
    for j in p["per_judge"]:
        console.print(f"  {j['judge']}: decided {j['decided']}, left out {j['left_out']}, "
                      f"position flips {j['position_flip_rate']}, against the majority "
                      f"{j['against_majority']}", highlight=False, markup=False, soft_wrap=True)


def rewording_line(report: dict[str, Any], out: Path) -> None:
    o = report["overall"]
    console.print(f"[bold]rewording[/]: {o['flipped']} of {o['comparable']} comparable "
                  f"comparisons flip with the wording (flip rate {o['flip_rate']}); accuracy "
                  f"{o['accuracy_original']} under the original questions, "
                  f"{o['accuracy_reworded']} under the rewordings -> {out / 'report.md'}",
                  highlight=False)
    for p in report["principles"]:
        missing = f", {len(p['missing'])} wording(s) not written" if p["missing"] else ""
        console.print(f"  {escape(p['id'])}: flip rate {p['flip_rate']} ({p['flipped']}/"
                      f"{p['comparable']}){missing}", highlight=False)
