"""The `cai` command. Each command parses its options and calls one library function.

Heavy libraries (llama.cpp, torch, trl) are imported inside the commands that need them, so
`cai --help` stays instant.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from cai.errors import CaiError

console = Console()
err = Console(stderr=True)

CONSTITUTION_HELP = "Constitution YAML file, or the name of a shipped one (harmless, helpful-honest)."


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cai")
def cli() -> None:
    """cai: Constitutional AI and RLAIF, from principles to preference data to training."""


def model_options(f: Any) -> Any:
    """Options every command that calls a model shares."""
    f = click.option("--base-url", "base_urls", multiple=True,
                     help="OpenAI-compatible server URL; repeat or comma-separate for replicas.")(f)
    f = click.option("--concurrency", default=8, show_default=True,
                     help="Prompts in flight at once.")(f)
    f = click.option("--templates", type=click.Path(file_okay=False), default=None,
                     help="Folder of prompt templates that override the shipped ones.")(f)
    return f


def _client(spec: str, base_urls: tuple[str, ...], concurrency: int, *, logprobs: bool = False):
    from cai.backends import load_backend, split_urls
    from cai.client import Client

    backend = load_backend(spec, base_urls=split_urls(base_urls), logprobs=logprobs)
    return Client(backend, concurrency=concurrency)


def _clients(model: str, critic: str | None, base_urls: tuple[str, ...], concurrency: int):
    policy = _client(model, base_urls, concurrency)
    if critic is None or critic == model:
        return policy, policy  # one model, one worker: the local model must not be loaded twice
    return policy, _client(critic, base_urls, concurrency)


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
           base_urls: tuple[str, ...], concurrency: int, templates: str | None) -> None:
    """Critique and revise answers under a constitution: SFT and preference data."""
    from cai.constitution import load_constitution
    from cai.inputs import read_prompts
    from cai.paths import resolve_constitution
    from cai.revise import Reviser
    from cai.revise import revise as run
    from cai.templates import Templates

    const = load_constitution(resolve_constitution(constitution))
    if principle:
        const.principle(principle)
    items = read_prompts(prompts_file, limit)
    policy, critic = _clients(model, critic_model, base_urls, concurrency)
    reviser = Reviser(const, policy, critic, Templates(templates), rounds=rounds, seed=seed,
                      principle=principle)

    async def go():
        try:
            return await run(items, reviser, Path(out), concurrency=concurrency)
        finally:
            await policy.aclose()
            if critic is not policy:
                await critic.aclose()

    result = asyncio.run(go())
    _report(result)


def _report(result: Any) -> None:
    s = result.summary
    tokens = sum(b["tokens_in"] + b["tokens_out"] for b in s["backends"].values())
    requests = sum(b["requests"] for b in s["backends"].values())
    console.print(
        f"[bold]{s['stage']}[/]: {s['done']} done, {s['failed']} failed, "
        f"{s['already_done']} already done; {requests} requests, {tokens} tokens, "
        f"{s['wall_seconds']:.1f}s -> {result.out}"
    )
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
         model: str, critic_model: str | None, rounds: int, seed: int,
         base_urls: tuple[str, ...], concurrency: int, templates: str | None) -> None:
    """Show the initial answer, critique and revision for one prompt, in seconds."""
    from cai.views import show_try

    show_try(console, constitution=constitution, prompt=prompt_text, principle=principle,
             compare=compare, policy=_clients(model, critic_model, base_urls, 1),
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
           seed: int, limit: int | None, base_urls: tuple[str, ...], concurrency: int,
           templates: str | None) -> None:
    """Sample K responses per prompt into responses.jsonl, for the judge."""
    from cai.inputs import read_prompts
    from cai.sample import sample as run
    from cai.templates import Templates

    items = read_prompts(prompts_file, limit)
    client = _client(model, base_urls, concurrency)
    _report(asyncio.run(_closing(run(items, client, Templates(templates), Path(out), n=n,
                                     seed=seed, temperature=temperature,
                                     concurrency=concurrency), client)))


async def _closing(coro: Any, *clients: Any) -> Any:
    """Await a stage, then close its clients whatever happened."""
    try:
        return await coro
    finally:
        for c in dict.fromkeys(clients):
            await c.aclose()


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
           cot_band: str, length_control: bool, seed: int, base_urls: tuple[str, ...],
           concurrency: int, templates: str | None):
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
    client = _client(judge_spec, base_urls, concurrency, logprobs=verdict != "text")
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

    async def go():
        try:
            if calibrate:
                await _calibrate(j, calibrate, Path(out) / "calibration")
            return await judge_file(items, j, Path(out),
                                    pairs=PairSettings(pairs, min_margin, length_ratio),
                                    concurrency=options["concurrency"])
        finally:
            await j.client.aclose()

    result = asyncio.run(go())
    _report(result)
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
    result = asyncio.run(_closing(judge_gold(gold, j, Path(out),
                                             concurrency=options["concurrency"]), j.client))
    _report(result)
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
                          f"sha256 {c.sha256[:12]}", markup=False, highlight=False)
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
