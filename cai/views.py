"""What the terminal shows: constitutions, rendered prompts, and `cai try` side by side."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from cai.chat import Message
from cai.constitution import Constitution, load_constitution
from cai.inputs import PromptItem, prompt_id
from cai.paths import resolve_constitution
from cai.revise import (
    Reviser,
    critique_messages,
    initial_messages,
    revision_messages,
)
from cai.run import RunSettings
from cai.templates import Templates


def show_constitution(console: Console, c: Constitution) -> None:
    console.print(Panel(f"{c.description}\n\n[dim]system prompt:[/] {c.system_prompt or '-'}",
                        title=f"[bold]{c.name}[/] {c.version}",
                        subtitle=f"sha256 {c.sha256[:12]}  {c.path}"))
    table = Table(show_lines=True, expand=True)
    for col in ("id", "weight", "critique", "revision", "judge"):
        table.add_column(col, overflow="fold")
    for p in c.principles:
        tags = f"\n[dim]{', '.join(p.tags)}[/]" if p.tags else ""
        table.add_row(f"[bold]{p.id}[/]{tags}", f"{p.weight:g}", p.critique, p.revision,
                      p.judge or "[dim]-[/]")
    console.print(table)
    if c.examples:
        console.print(f"{len(c.examples)} few-shot example(s): "
                      + ", ".join(e.principle or "-" for e in c.examples))


def render_messages(name: str, *, constitution: str, principle: str | None, prompt: str,
                    response: str, critique: str, templates: str | None) -> list[Message]:
    """The exact messages a model is sent for one template, built as the engine builds them."""
    t = Templates(templates)
    c = load_constitution(resolve_constitution(constitution))
    p = c.principle(principle) if principle else c.principles[0]
    conversation = (Message("user", prompt),)
    if name == "system":
        return initial_messages(t, c, conversation)
    if name == "critique":
        return critique_messages(t, c, conversation, response, p)
    if name == "revision":
        return revision_messages(t, c, conversation, response, critique, p)
    if name.startswith("judge"):
        from cai.judge import render_judge

        return render_judge(t, name, c, p, conversation, response, critique)
    return [Message("user", t.render(name))]


def show_try(console: Console, *, constitution: str, prompt: str, principle: str | None,
             compare: str | None, run: RunSettings, model: str, critic_model: str, rounds: int,
             seed: int, templates: str | None) -> None:
    """Run critique-and-revise on one prompt and show each step, side by side."""
    t = Templates(templates)
    new = load_constitution(resolve_constitution(constitution))
    versions = [("new" if compare else new.name, new)]
    if compare:
        versions.insert(0, ("old", load_constitution(resolve_constitution(compare))))
    item = PromptItem(prompt_id((Message("user", prompt),)), (Message("user", prompt),), 0)

    policy = (run.client(model), run.client(critic_model))

    async def run_all() -> list[dict[str, Any]]:
        results = []
        try:
            for _, c in versions:
                if principle:
                    c.principle(principle)
                reviser = Reviser(c, policy[0], policy[1], t, rounds=rounds, seed=seed,
                                  principle=principle)
                results.append(await reviser.run_one(item))
        finally:
            await run.close()
        return results

    results = asyncio.run(run_all())
    table = Table(show_lines=True, expand=True, title=f"[bold]prompt:[/] {prompt}")
    table.add_column("step", style="bold", no_wrap=True)
    for label, c in versions:
        table.add_column(f"{label}: {c.name} {c.version} ({c.sha256[:8]})", overflow="fold")
    traces = [r["trace.jsonl"][0]["steps"] for r in results]
    for i in range(max(len(s) for s in traces)):
        step = traces[0][i] if i < len(traces[0]) else traces[-1][i]
        label = step["step"] + (f" {step['round']}\n[dim]{step.get('principle', '')}[/]"
                                if step["round"] else "")
        table.add_row(label, *[(s[i]["text"] if i < len(s) else "") for s in traces])
    console.print(table)
    used = sum(s["usage"]["prompt_tokens"] + s["usage"]["completion_tokens"]
               for steps in traces for s in steps)
    console.print(f"[dim]model {policy[0].spec}, critic {policy[1].spec}, seed {seed}, "
                  f"{used} tokens[/]")
