"""What the terminal shows: constitutions, rendered prompts, and `cai try` side by side."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from cai.chat import Message
from cai.constitution import Constitution, load_constitution
from cai.paths import resolve_constitution
from cai.stages.judge import render_judge
from cai.stages.revise import critique_messages, initial_messages, revision_messages
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
        return render_judge(t, name, c, p, conversation, response, critique)
    return [Message("user", t.render(name))]


def show_try(console: Console, prompt: str, versions: list[tuple[str | None, Constitution]],
             traces: list[list[dict[str, Any]]], model: str, critic: str, seed: int) -> None:
    """Draw the steps of `cai try` for each constitution, side by side."""
    table = Table(show_lines=True, expand=True, title=f"[bold]prompt:[/] {prompt}")
    table.add_column("step", style="bold", no_wrap=True)
    for label, c in versions:
        table.add_column(f"{label or c.name}: {c.name} {c.version} ({c.sha256[:8]})",
                         overflow="fold")
    for i in range(max(len(s) for s in traces)):
        step = traces[0][i] if i < len(traces[0]) else traces[-1][i]
        label = step["step"] + (f" {step['round']}\n[dim]{step.get('principle', '')}[/]"
                                if step["round"] else "")
        table.add_row(label, *[(s[i]["text"] if i < len(s) else "") for s in traces])
    console.print(table)
    used = sum(s["usage"]["prompt_tokens"] + s["usage"]["completion_tokens"]
               for steps in traces for s in steps)
    console.print(f"[dim]model {model}, critic {critic}, seed {seed}, {used} tokens[/]")


def show_policy_report(console: Console, r: dict[str, Any], out: Any) -> None:
    """The headline of `cai eval policy`: the rates, and where the full report is."""
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    table = Table(title=f"policy {r['model']}: {r['n']} answers", show_lines=False)
    table.add_column("measure")
    table.add_column("policy", justify="right")
    if r.get("reference"):
        table.add_column("reference", justify="right")
    for label, key in (("over-refusal", "over_refusal_rate"),
                       ("unsafe compliance", "unsafe_compliance_rate"),
                       ("false-premise agreement", "false_premise_agreement_rate"),
                       ("hedged", "hedge_rate"), ("boilerplate", "boilerplate_rate")):
        cells = [pct(r[key])] + ([pct(r["reference"][key])] if r.get("reference") else [])
        table.add_row(label, *cells)
    lengths = [f"{r['mean_length']}"] + (
        [f"{r['reference']['mean_length']}"] if r.get("reference") else [])
    table.add_row("mean length (words)", *lengths)
    console.print(table)
    if r.get("win_rate") is not None:
        lo, hi = r["win_rate_ci95"]
        console.print(f"win rate {pct(r['win_rate'])} (95% CI {pct(lo)}-{pct(hi)}), "
                      f"length-controlled {pct(r['win_rate_length_controlled'])}, length ratio "
                      f"{r['length_ratio']}, by {r['evaluator']}; coverage "
                      f"{pct(r['win_coverage'])} (undecided comparisons count as ties)",
                      highlight=False)
    if r.get("evaluator_note"):
        console.print(f"[yellow]note:[/] {r['evaluator_note']}", highlight=False)
    console.print(f"-> {out}/report.html, report.md, report.json", highlight=False)
