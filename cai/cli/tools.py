"""Commands for the files a user edits: constitutions and prompt templates."""

from __future__ import annotations

import sys

import click

from cai.cli.options import (
    CONSTITUTION_HELP,
    console,
    err,
)

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
