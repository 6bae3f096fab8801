"""`cai loop CONFIG --out RUN` and `cai loop status RUN`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cai.cli.options import DefaultGroup, console


@click.group("loop", cls=DefaultGroup)
def loop_group() -> None:
    """The self-alignment loop, overnight: `cai loop CONFIG --out RUN`, then
    `cai loop status RUN`."""


@loop_group.command("run")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The run folder.")
@click.option("--iterations", default=None, type=click.IntRange(1),
              help="Iterations in all (overrides the config; a larger number extends a run).")
@click.option("--limit", default=None, type=click.IntRange(1),
              help="Cap every stage's prompts, the evaluation suite's included: a quick run.")
def loop_run(config: str, out: str, iterations: int | None, limit: int | None) -> None:
    """Run (or resume) the loop the CONFIG describes, into the folder --out."""
    from cai.loop.run import run_loop

    def echo(line: str) -> None:
        click.echo(line)  # a line at a time, flushed: readable under nohup too

    result = run_loop(Path(config), Path(out), iterations=iterations, limit=limit, echo=echo)
    console.print(f"[bold]loop[/]: finished ({result['reason']}); policy {result['policy']} "
                  f"-> {Path(out) / 'report.html'}", highlight=False)
    if result["resume"]:  # stopped by the budget or the deadline: a rerun goes on
        console.print(f"to go on (with a larger budget or a later deadline): {result['resume']}",
                      highlight=False, markup=False)


@loop_group.command("status")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print only JSON.")
def loop_status(folder: str, as_json: bool) -> None:
    """Where a run is: iteration, stage, progress, spending, gates, estimated finish."""
    from cai.loop.report import status

    s = status(Path(folder))
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    _show(s)


def _show(s: dict[str, Any]) -> None:
    where = f"iteration {s['iteration']} of {s['iterations']}"
    if s["stage"]:
        where += f", stage {s['stage']}"
        if s["progress"]:
            where += " (" + ", ".join(f"{k} {v}" for k, v in s["progress"].items()) + ")"
    lines = [f"{s['folder']}: {s['state']}" + (f" ({s['reason']})" if s["reason"] else ""),
             where, f"policy: {s['policy']}",
             f"spent: ${s['spent']['cost_usd']:.4f}, {s['spent']['tokens']} tokens, "
             f"{s['spent']['requests']} requests, {s['spent']['cache_hits']} cache hits"]
    lines += [f"  {key}: ${x['cost_usd']:.4f}, {x['tokens']} tokens, {x['requests']} requests"
              for key, x in s["spent_by_stage"].items()]
    lines += [f"still running: pid {p['pid']}: {p['command']}" for p in s["processes"]]
    for u in s["unfinished"]:
        done = f"{u['items_done']} of {u['items']} items done, " if u["items"] else ""
        lines.append(f"iteration {u['iteration']}, {u['stage']}: {u['event']}, {done}"
                     f"{u['reason']}")
    for g in s["gates"]:
        verdict = "promoted" if g["promoted"] else f"not promoted ({', '.join(g['failed'])})"
        lines.append(f"gates of iteration {g['iteration']}: {verdict}")
    if s["estimated_finish"]:
        lines.append(f"estimated finish: {s['estimated_finish']}")
    if s["resume"]:
        lines.append(f"to go on: {s['resume']}")
    for line in lines:
        console.print(line, highlight=False, markup=False)
