"""`cai constitution induce`: a constitution learned from preference pairs, after the method of
Inverse Constitutional AI (Findeis et al., 2024): propose a principle per pair, merge near
duplicates, test each as a judge question on held-out pairs with cai's own judge (both
orders), and keep the K whose verdicts best reconstruct the people's choices.

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
from cai.records import read_jsonl, write_json
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
                                                                       list[GoldPair]]:
    """Propose on some pairs and test on the others, by a seeded hash of each id."""
    order = sorted(pairs, key=lambda p: hashlib.sha256(f"{seed}:{p.id}".encode()).digest())
    n = max(1, round(holdout * len(order))) if len(order) > 1 else 0
    return order[n:], order[:n]


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
    """Each candidate as a judge question on the held-out pairs: its reconstruction accuracy
    (a tie counts half, an unjudged pair too)."""
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
    rows = list(read_jsonl(out / "tests.jsonl"))
    for i, c in enumerate(candidates):
        scores = [_credit(r["p_chosen"].get(f"induced-{i + 1}")) for r in rows]
        c.update(accuracy=round(sum(scores) / len(scores), 4) if scores else None,
                 tested_on=len(scores))
    return candidates


def _credit(p: float | None) -> float:
    return 0.5 if p is None or p == 0.5 else float(p > 0.5)


def write_constitution(path: Path, kept: list[dict[str, Any]], source: str,
                       length: float | None) -> Constitution:
    """The induced constitution, each principle's measured accuracy in a comment; checked."""
    lines = [f"# Induced by `cai constitution induce` from {source}, after Inverse",
             "# Constitutional AI: each principle's reconstruction accuracy is the share of",
             "# held-out pairs whose human choice its judge question reproduces.",
             *([f"# For comparison, 'prefer the longer reply' reproduces {length:.2f}."]
               if length is not None else []),
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
    train, held = split(pairs, holdout, seed)
    if not held or not train:
        raise CaiError(f"{len(pairs)} pairs cannot be split into proposing and testing; give "
                       "at least 2, or change --holdout")
    candidates = merge(await propose(train, client, templates, work, session, seed))
    if not candidates:
        raise CaiError(f"no principle could be read from the model's replies; see "
                       f"{work / 'failed.jsonl'}")
    tested = await test(candidates[:CANDIDATES], held, client, templates, work, session, seed)
    kept = sorted(tested, key=lambda c: (-(c["accuracy"] or 0), -c["support"]))[:k]
    longer = [float(len(p.chosen) > len(p.rejected)) for p in held
              if len(p.chosen) != len(p.rejected)]
    length = sum(longer) / len(longer) if longer else None
    const = write_constitution(out, kept, source, length)
    report = {"constitution": str(out), "sha256": const.sha256, "pairs": len(pairs),
              "proposed_on": len(train), "held_out": len(held),
              "candidates": tested, "kept": [c["question"] for c in kept],
              "longer_reply_accuracy": None if length is None else round(length, 4),
              "model": client.spec}
    write_json(out.with_name(f"{out.stem}.report.json"), report)
    return report
