"""Commands for the files a user edits: constitutions and prompt templates."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cai.cli.options import (
    CONSTITUTION_HELP,
    OVERWRITE,
    console,
    err,
    model_options,
    run,
)
from cai.errors import CaiError

# ---------------------------------------------------------------- constitutions


@click.group("constitution")
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
    from cai.cli.views import show_constitution
    from cai.constitution import load_constitution
    from cai.paths import resolve_constitution

    show_constitution(console, load_constitution(resolve_constitution(file)))


@constitution_group.command("lint")
@click.argument("files", nargs=-1, required=True)
@click.option("--strict", is_flag=True, help="Exit 1 when a rule or a measured figure finds "
              "anything (a model's clarity opinion never counts).")
@click.option("--model", default=None, help="Also ask this model how clearly each principle "
              "can be acted on (off by default; printed as the model's opinion); with --gold, "
              "also the judge whose verdicts are tested against rewording.")
@click.option("--gold", default=None, type=click.Path(dir_okay=False), help="Human-labelled "
              "pairs (as for `cai eval judge`): with --model, judge them under each judge "
              "question and its rewordings, and flag principles whose verdicts flip with the "
              "wording more often than --max-flip.")
@click.option("--rewordings", default=3, show_default=True, type=click.IntRange(1, 20),
              help="Rewordings per judge question, with --gold.")
@click.option("--max-flip", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="The share of gold pairs whose verdict may change with the wording.")
@model_options
def constitution_lint(files: tuple[str, ...], strict: bool, model: str | None,
                      gold: str | None, rewordings: int, max_flip: float, session: Any,
                      templates: str | None) -> None:
    """Advice on how the principles are written, each with its line (see README for where each
    rule comes from)."""
    from cai.authoring.lint import ADVICE_ONLY, lint, model_findings
    from cai.constitution import ConstitutionError
    from cai.evals.calibration import read_gold
    from cai.paths import resolve_constitution
    from cai.templates import Templates

    if gold and not model:
        raise CaiError("--gold needs --model: the judge whose verdicts are tested against "
                       "rewording")
    if gold:
        read_gold(Path(gold))  # checked before any model loads
    found = 0
    for name in files:
        path = resolve_constitution(name)
        try:
            findings = lint(path)
        except ConstitutionError as e:
            raise CaiError(f"{path}: not a valid constitution ({e.problems[0]}); see `cai "
                           "constitution check`") from None
        if model:
            judge = session.client(model, logprobs=True) if gold else None
            findings += run(session, model_findings(
                path, session.client(model), Templates(templates), judge, gold, rewordings,
                max_flip, session))
        found += sum(f.rule not in ADVICE_ONLY for f in findings)
        findings.sort(key=lambda f: (f.line, f.rule))
        for f in findings:
            console.print(str(f), markup=False, highlight=False, soft_wrap=True)
        if not findings:
            console.print(f"{path}: no advice", markup=False, highlight=False)
    if strict and found:
        sys.exit(1)


@constitution_group.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--prompts", "prompts_file", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--model", default="local", show_default=True, help="The policy that answers.")
@click.option("--critic-model", default=None, help="[default: --model]")
@click.option("--evaluator", default="local", show_default=True,
              help="The model that compares the new final answers with the old.")
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(1, 10))
@click.option("--limit", default=None, type=click.IntRange(1), help="Only the first K prompts.")
@click.option("--principle", default=None, help="Use this principle id in every round, in "
              "both: focus the run on an edited principle.")
@click.option("--seed", default=0, show_default=True)
@OVERWRITE
@model_options
def constitution_diff(old: str, new: str, prompts_file: str, out: str, model: str,
                      critic_model: str | None, evaluator: str, rounds: int,
                      limit: int | None, principle: str | None, seed: int, overwrite: bool,
                      session: Any, templates: str | None) -> None:
    """What an edit changed, and what it does to the answers, measured."""
    from cai.authoring.diff import diff
    from cai.constitution import load_constitution
    from cai.folders import claim
    from cai.inputs import read_prompts
    from cai.paths import resolve_constitution
    from cai.templates import Templates

    before = load_constitution(resolve_constitution(old))
    after = load_constitution(resolve_constitution(new))
    items = read_prompts(prompts_file, limit)
    claim(Path(out), "constitution diff", {"--prompts": prompts_file, "OLD": before.path,
                                           "NEW": after.path}, overwrite=overwrite,
          dry_run=session.dry_run)
    r = run(session, diff(before, after, items, Path(out), session=session,
                          templates=Templates(templates), model=model,
                          critic=critic_model or model, evaluator=evaluator, rounds=rounds,
                          seed=seed, principle=principle))
    if "dry_run" in r:
        console.print_json(data=r["dry_run"])
        return
    c = r["changes"]
    console.print(f"changed: {len(c['added'])} added, {len(c['removed'])} removed, "
                  f"{len(c['edited'])} edited principles", highlight=False)
    ci = r["win_rate_ci95"] or ["-", "-"]
    console.print(f"new over old: win rate {r['win_rate']} (95% CI {ci[0]}-{ci[1]}), "
                  f"length-controlled {r['win_rate_length_controlled']}; "
                  f"{r['unchanged_answers']} of {r['prompts']} answers unchanged",
                  highlight=False)
    for k, d in r["detectors"].items():
        console.print(f"  {k}: {d['old']} -> {d['new']}", highlight=False)
    console.print(f"-> {Path(out) / 'report.html'}", highlight=False)


@constitution_group.command("induce")
@click.option("--data", required=True, type=click.Path(dir_okay=False),
              help="Preference pairs: TRL (prompt, chosen, rejected) or HH transcripts.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The constitution to write (YAML); its report goes beside it.")
@click.option("--model", default="local", show_default=True,
              help="Proposes principles and judges the held-out pairs.")
@click.option("--principles", "k", default=5, show_default=True, type=int,
              help="How many principles to keep.")
@click.option("--holdout", default=0.3, show_default=True, type=click.FloatRange(0.05, 0.95),
              help="Share of pairs kept for testing the proposed principles.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Only the first K pairs.")
@click.option("--seed", default=0, show_default=True)
@OVERWRITE
@model_options
def constitution_induce(data: str, out: str, model: str, k: int, holdout: float,
                        limit: int | None, seed: int, overwrite: bool, session: Any,
                        templates: str | None) -> None:
    """Learn a constitution from preference pairs (after Inverse Constitutional AI)."""
    from cai.authoring.induce import induce, work_folder
    from cai.evals.calibration import read_gold
    from cai.folders import claim
    from cai.templates import Templates

    if k < 1:
        raise CaiError(f"--principles {k}: keep at least one principle")
    pairs = read_gold(Path(data))[:limit]
    claim(work_folder(Path(out)), "constitution induce", {"--data": data}, overwrite=overwrite,
          dry_run=session.dry_run)
    r = run(session, induce(pairs, Path(out), k=k, holdout=holdout,
                            client=session.client(model, logprobs=True),
                            templates=Templates(templates), session=session, seed=seed,
                            source=Path(data).name))
    for c in r["candidates"]:
        kept = "kept" if c["question"] in r["kept"] else "    "
        console.print(f"{kept} {c['accuracy']} (chosen on {c['selection_accuracy']}, proposed "
                      f"{c['support']}x)  {c['question']}", highlight=False, markup=False)
    console.print(f"induced {len(r['kept'])} principles from {r['pairs']} pairs: proposed on "
                  f"{r['proposed_on']}, chosen on {r['selected_on']}, accuracy measured on "
                  f"{r['held_out']} others, where 'prefer the longer reply' reproduces "
                  f"{r['longer_reply_accuracy']} -> {out}", highlight=False, markup=False)


# ---------------------------------------------------------------- prompt templates


@click.group("prompts")
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
    from cai.cli.views import render_messages

    messages = render_messages(name, constitution=constitution, principle=principle,
                               prompt=prompt_text, response=response, critique=critique,
                               templates=templates)
    for m in messages:
        console.rule(f"[bold]{m.role}")
        console.print(m.content, markup=False, highlight=False)
