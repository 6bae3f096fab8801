"""`cai constitution induce`: a constitution learned from preference pairs, after the method of
Inverse Constitutional AI (Findeis et al., 2024): propose a principle per pair, merge near
duplicates, test each as a judge question on held-out pairs with cai's own judge (both
orders), and keep the K whose verdicts best reconstruct the people's choices.

The held-out pairs are split in two: the K are chosen by their accuracy on one half, and the
accuracy reported is on the other, which took no part in choosing (the best of many on the
pairs that chose them is biased upward). The "prefer the longer reply" baseline is measured
on the same reporting pairs, a tie in length counting half as a tie in a verdict does.

Built on cai's judge, templates, cache and stage runner rather than on a third-party
pipeline, so that its requests resume, are cached and are budgeted like any other.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cai.chat import Message
from cai.constitution import Constitution, Principle, load_constitution
from cai.data.dedup import find_duplicates
from cai.data.rows import Row
from cai.errors import CaiError
from cai.evals.calibration import GoldPair
from cai.records.read import read_jsonl
from cai.records.rewrite import write_json
from cai.stages.judge import Judge, JudgeSettings, fenced, make_fence
from cai.stages.stage import run_stage

if TYPE_CHECKING:
    from cai.models.client import Client
    from cai.models.session import Session
    from cai.templates import Templates

MERGE = 0.5  # word 3-gram similarity at which two proposed questions are one
CANDIDATES = 12  # the most-proposed questions tested on the held-out pairs
_QUESTION = re.compile(r"(Which (?:reply|response)[^?\n]{3,200}\?)", re.IGNORECASE)


def split(pairs: list[GoldPair], holdout: float, seed: int) -> tuple[list[GoldPair],
                                                                       list[GoldPair],
                                                                       list[GoldPair]]:
    """Propose on some pairs, select on some held-out pairs and report on the others, by a
    seeded hash of each id; the three never share a pair."""
    order = sorted(pairs, key=lambda p: hashlib.sha256(f"{seed}:{p.id}".encode()).digest())
    n = max(2, round(holdout * len(order))) if len(order) > 2 else 0
    held = order[:n]
    return order[n:], held[::2], held[1::2]


def question_of(text: str) -> str | None:
    found = _QUESTION.search(text)
    return " ".join(found.group(1).split()) if found else None


async def propose(pairs: list[GoldPair], client: Client, templates: Templates, out: Path,
                  session: Session, seed: int) -> list[dict[str, Any]]:
    async def work(pair: GoldPair) -> dict[str, list[dict[str, Any]]]:
        fence = make_fence(f"{seed}:induce:{pair.id}")
        text = templates.render(
            "induce_propose", conversation=[Message(m.role, fenced(m.content, fence))
                                            for m in pair.messages if m.role != "system"],
            chosen=fenced(pair.chosen, fence), rejected=fenced(pair.rejected, fence),
            fence=fence)
        completion = await client.complete([Message("user", text)],
                                           client.sampling(seed=seed, temperature=0.0))
        question = question_of(completion.text)
        if question is None:
            raise CaiError("no 'Which reply ...?' question in the reply")
        return {"proposals.jsonl": [{"id": pair.id, "question": question,
                                     "text": completion.text}]}

    await run_stage("induce-propose", pairs, work, out=out, files=("proposals.jsonl",),
                    clients=[client], concurrency=session.limits.concurrency,
                    config={"model": client.spec, "model_identity": client.identity,
                            "seed": seed, "templates": templates.hashes("induce_propose")},
                    session=session)
    return list(read_jsonl(out / "proposals.jsonl"))


def merge(proposals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Near-duplicate questions as one, with how many pairs proposed it, most first."""
    rows = [Row(i, str(i), p["question"], p) for i, p in enumerate(proposals)]
    into = {d.row.id: d.of.id for d in find_duplicates(rows, MERGE, strip_shared=False)}
    support: dict[str, int] = {}
    for r in rows:
        support[into.get(r.id, r.id)] = support.get(into.get(r.id, r.id), 0) + 1
    by_id = {r.id: r for r in rows}
    return sorted(({"question": by_id[k].text, "support": n} for k, n in support.items()),
                  key=lambda c: -c["support"])


def _principle(i: int, question: str) -> Principle:
    return Principle(id=f"induced-{i + 1}",
                     critique=f"Identify where the assistant's last response falls short on "
                              f"this question: {question}",
                     revision=f"Rewrite the response so that it does better on this question: "
                              f"{question}",
                     judge=question)


async def test(candidates: list[dict[str, Any]], pairs: list[GoldPair], client: Client,
               templates: Templates, out: Path, session: Session,
               seed: int) -> list[dict[str, Any]]:
    """Each candidate as a judge question on the held-out pairs: one row per pair of each
    candidate's P(the people's choice is better)."""
    const = Constitution("candidates", "0", "induced", tuple(
        _principle(i, c["question"]) for i, c in enumerate(candidates)))
    judge = Judge(client, templates, const, JudgeSettings(principles="all", seed=seed))

    async def work(pair: GoldPair) -> dict[str, list[dict[str, Any]]]:
        c = await judge.compare(pair.messages, pair.chosen, pair.rejected, pair.id)
        return {"tests.jsonl": [{"id": pair.id, "p_chosen": {
            j.principle: j.p_x for j in c.judgements}}]}

    await run_stage("induce-test", pairs, work, out=out, files=("tests.jsonl",),
                    clients=[client], concurrency=session.limits.concurrency,
                    config={"judge": client.spec, "model_identity": client.identity,
                            "candidates": [c["question"] for c in candidates], "seed": seed},
                    session=session)
    return list(read_jsonl(out / "tests.jsonl"))


def accuracy(rows: list[dict[str, Any]], i: int, ids: set[str]) -> float | None:
    """Candidate i's reconstruction accuracy over the pairs `ids` (a tie counts half, an
    unjudged pair too)."""
    scores = [_credit(r["p_chosen"].get(f"induced-{i + 1}")) for r in rows if r["id"] in ids]
    return round(sum(scores) / len(scores), 4) if scores else None


def choose(candidates: list[dict[str, Any]], rows: list[dict[str, Any]], select: set[str],
           report: set[str], k: int) -> list[dict[str, Any]]:
    """The K best candidates by their accuracy on the `select` pairs, each with its accuracy
    on the `report` pairs beside it: the figure to believe."""
    for i, c in enumerate(candidates):
        c.update(selection_accuracy=accuracy(rows, i, select),
                 accuracy=accuracy(rows, i, report),
                 selected_on=sum(r["id"] in select for r in rows),
                 tested_on=sum(r["id"] in report for r in rows))
    return sorted(candidates, key=lambda c: (-(c["selection_accuracy"] or 0),
                                             -c["support"]))[:k]


def longer_reply(pairs: list[GoldPair]) -> float | None:
    """How often "prefer the longer reply" reproduces the people's choice, over every pair
    (equal lengths count half, as a tie does for a principle)."""
    scores = [0.5 if len(p.chosen) == len(p.rejected) else float(len(p.chosen) >
                                                                   len(p.rejected))
              for p in pairs]
    return round(sum(scores) / len(scores), 4) if scores else None


def _credit(p: float | None) -> float:
    return 0.5 if p is None or p == 0.5 else float(p > 0.5)


def write_constitution(path: Path, kept: list[dict[str, Any]], source: str,
                       length: float | None) -> Constitution:
    """The induced constitution, each principle's measured accuracy in a comment; checked."""
    lines = [f"# Induced by `cai constitution induce` from {source}, after Inverse",
             "# Constitutional AI: each principle's reconstruction accuracy is the share of",
             "# held-out pairs whose human choice its judge question reproduces, on pairs",
             "# that took no part in choosing it.",
             *([f"# For comparison, 'prefer the longer reply' reproduces {length:.2f} of the "
                "same pairs."] if length is not None else []),
             "name: induced", 'version: "1"',
             f"description: {json.dumps(f'Principles learned from {source}.')}",
             "principles:"]
    for i, c in enumerate(kept):
        p = _principle(i, c["question"])
        accuracy = "-" if c["accuracy"] is None else f"{c['accuracy']:.2f}"
        lines.append(f"  # reconstruction accuracy {accuracy} on {c['tested_on']} held-out "
                     f"pairs; proposed for {c['support']} pairs")
        lines.append(f"  - id: {p.id}")
        for key in ("critique", "revision", "judge"):
            lines.append(f"    {key}: {json.dumps(getattr(p, key), ensure_ascii=False)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_constitution(path)


def work_folder(out: Path) -> Path:
    """Where the proposals and tests of an induction into `out` are kept, to resume."""
    return out.with_name(f"{out.stem}.induce")


async def induce(pairs: list[GoldPair], out: Path, *, k: int, holdout: float, client: Client,
                 templates: Templates, session: Session, seed: int = 0,
                 source: str = "preference pairs") -> dict[str, Any]:
    work = work_folder(out)
    train, select, held = split(pairs, holdout, seed)
    if not held or not train:
        raise CaiError(f"{len(pairs)} pairs cannot be split into proposing, choosing and "
                       "reporting; give at least 3, or change --holdout")
    candidates = merge(await propose(train, client, templates, work, session, seed))
    if not candidates:
        raise CaiError(f"no principle could be read from the model's replies; see "
                       f"{work / 'failed.jsonl'}")
    tested = candidates[:CANDIDATES]
    rows = await test(tested, select + held, client, templates, work, session, seed)
    kept = choose(tested, rows, {p.id for p in select}, {p.id for p in held}, k)
    length = longer_reply(held)
    const = write_constitution(out, kept, source, length)
    report = {"constitution": str(out), "sha256": const.sha256, "pairs": len(pairs),
              "proposed_on": len(train), "selected_on": len(select), "held_out": len(held),
              "candidates": tested, "kept": [c["question"] for c in kept],
              "longer_reply_accuracy": length, "model": client.spec}
    write_json(out.with_name(f"{out.stem}.report.json"), report)
    return report
