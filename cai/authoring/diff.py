"""`cai constitution diff OLD NEW`: what an edit changed, and what it does to the answers.

The texts are compared principle by principle (added, removed, and edited critiques,
revisions, judge questions, weights and tags, as word diffs). Then critique and revise runs
under each constitution on the same prompts and seeds (requests that are the same in both,
such as the first answers, are paid once through the cache), and `cai eval policy` compares
the new final answers with the old: the evaluator in both orders, with a length-controlled
win rate beside the raw one, and the detectors' refusal, hedging, length and boilerplate.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cai.chat import reply_text
from cai.constitution import Constitution, Principle
from cai.errors import CaiError
from cai.inputs import PromptItem
from cai.records.read import read_jsonl
from cai.records.rewrite import write_jsonl

if TYPE_CHECKING:
    from cai.models.session import Session
    from cai.templates import Templates

FIELDS = ("critique", "revision", "judge", "weight", "tags")
RATES = ("over_refusal_rate", "unsafe_compliance_rate", "false_premise_agreement_rate",
         "hedge_rate", "boilerplate_rate", "mean_length")
MOST_CHANGED = 10


def word_diff(old: str, new: str) -> str:
    """Words removed as [-...-] and added as {+...+}, the rest as it was."""
    a, b = old.split(), new.split()
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b).get_opcodes():
        if op == "equal":
            parts.append(" ".join(a[i1:i2]))
        if op in ("delete", "replace"):
            parts.append(f"[-{' '.join(a[i1:i2])}-]")
        if op in ("insert", "replace"):
            parts.append(f"{{+{' '.join(b[j1:j2])}+}}")
    return " ".join(parts)


def _value(p: Principle, name: str) -> str:
    value = getattr(p, name)
    if name == "tags":
        return ", ".join(value)
    return "" if value is None else f"{value:g}" if name == "weight" else str(value)


def changes(old: Constitution, new: Constitution) -> dict[str, Any]:
    """What the edit changed, by principle id."""
    before, after = {p.id: p for p in old.principles}, {p.id: p for p in new.principles}
    edited = []
    for pid in before.keys() & after.keys():
        fields = {f: word_diff(_value(before[pid], f), _value(after[pid], f)) for f in FIELDS
                  if _value(before[pid], f) != _value(after[pid], f)}
        if fields:
            edited.append({"id": pid, "fields": fields})
    return {
        "added": [{"id": p.id, "critique": p.critique} for p in new.principles
                  if p.id not in before],
        "removed": [{"id": p.id, "critique": p.critique} for p in old.principles
                    if p.id not in after],
        "edited": sorted(edited, key=lambda e: e["id"]),
        "system_prompt_changed": old.system_prompt != new.system_prompt,
    }


async def diff(old: Constitution, new: Constitution, items: list[PromptItem], out: Path, *,
               session: Session, templates: Templates, model: str, critic: str,
               evaluator: str, rounds: int = 1, seed: int = 0,
               principle: str | None = None) -> dict[str, Any]:
    """The whole comparison into `out`; returns report.json's content."""
    from cai.evals.policy import eval_policy
    from cai.stages.revise import Reviser, revise

    for const in (old, new):
        if principle and principle not in {p.id for p in const.principles}:
            raise CaiError(f"--principle {principle}: not in {const.path}; give an id both "
                           "constitutions have")
    runs = {}
    for name, const in (("old", old), ("new", new)):
        reviser = Reviser(const, session.client(model), session.client(critic), templates,
                          rounds=rounds, seed=seed, principle=principle)
        runs[name] = await revise(items, reviser, out / name,
                                  concurrency=session.limits.concurrency, session=session)
    if session.dry_run:
        return {"dry_run": [r.summary["dry_run"] for r in runs.values()]}
    for name in ("old", "new"):
        _answers(items, out / name)
    evaluation = await eval_policy(out / "eval", session=session, templates=templates,
                                   responses=out / "new" / "answers.jsonl",
                                   reference_responses=out / "old" / "answers.jsonl",
                                   evaluator=evaluator, seed=seed)
    report = build_report(old, new, out, evaluation, model=model, critic=critic,
                          evaluator=evaluator)
    from cai.reports import constitution_diff as views
    from cai.reports.render import write

    write(out, "constitution_diff", report, views.plots, labels=views.LABELS,
          marked=views.marked)
    return report


def _answers(items: list[PromptItem], folder: Path) -> None:
    """The final answers as `cai eval policy` reads them, with each prompt's kind and
    category (a suite's safe/unsafe labels give the refusal rates)."""
    by_id = {item.id: item for item in items}
    write_jsonl(folder / "answers.jsonl", [
        {"id": r["id"], "prompt": r["prompt"], "response": reply_text(r["completion"]),
         "kind": _kind(by_id[r["id"]].kind), "category": by_id[r["id"]].category}
        for r in read_jsonl(folder / "sft.jsonl") if r["id"] in by_id])


def _kind(kind: str | None) -> str:
    """A suite's kind; any other (a generated prompt's `red-team`, none) counts as helpful."""
    from cai.evals.suites import KINDS

    return kind if kind in KINDS else "helpful"


def build_report(old: Constitution, new: Constitution, out: Path, evaluation: dict[str, Any],
                 **models: str) -> dict[str, Any]:
    ref = evaluation.get("reference") or {}
    finals = {name: {r["id"]: r for r in read_jsonl(out / name / "sft.jsonl")}
              for name in ("old", "new")}
    pairs = []
    for rid, r in finals["new"].items():
        before = finals["old"].get(rid)
        if before is None:
            continue
        a, b = reply_text(before["completion"]), reply_text(r["completion"])
        similarity = difflib.SequenceMatcher(a=a.split(), b=b.split()).ratio()
        pairs.append({"id": rid, "prompt": r["prompt"][-1]["content"], "old": a, "new": b,
                      "old_principles": before.get("principles"),
                      "new_principles": r.get("principles"),
                      "changed": round(1 - similarity, 4)})
    pairs.sort(key=lambda p: -p["changed"])
    return {
        "old": {**old.provenance, "path": old.path}, "new": {**new.provenance, "path": new.path},
        "changes": changes(old, new), "models": models, "prompts": len(pairs),
        "win_rate": evaluation.get("win_rate"), "win_rate_ci95": evaluation.get("win_rate_ci95"),
        "win_rate_length_controlled": evaluation.get("win_rate_length_controlled"),
        "length_ratio": evaluation.get("length_ratio"),
        "win_coverage": evaluation.get("win_coverage"),
        "detectors": {k: {"old": ref.get(k), "new": evaluation.get(k),
                          "delta": None if ref.get(k) is None or evaluation.get(k) is None
                          else round(evaluation[k] - ref[k], 4)} for k in RATES},
        "unchanged_answers": sum(p["changed"] == 0 for p in pairs),
        "changed_answers": sum(p["changed"] != 0 for p in pairs),
        "most_changed": pairs[:MOST_CHANGED],
        "evaluator_note": evaluation.get("evaluator_note"),
    }
