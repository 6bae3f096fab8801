"""`cai review stats`: how far people agree with the judge and with each other, and the gold
file of their choices (TRL format, for `cai eval judge --data`): the circle closed, a judge
calibrated on your own reviewers."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

from cai.evals.calibration import cohen_kappa, wilson
from cai.records import assistant, write_json, write_jsonl
from cai.review.pairs import Pair, labels, paths, preferred, read_pairs


def votes(target: Path) -> list[tuple[str, Pair, str]]:
    """(reviewer, pair, `x` | `y` | `tie`) for every standing label that is not a skip."""
    pairs = {p.id: p for p in read_pairs(target)}
    found = []
    for (reviewer, pid), r in sorted(labels(paths(target).reviews).items()):
        said = preferred(r["choice"], r["order"])
        if said is not None and pid in pairs:
            found.append((reviewer, pairs[pid], said))
    return found


def _agreement(rows: list[tuple[str, Pair, str]]) -> dict[str, Any]:
    """People against the judge, over pairs the judge decided and the person did too."""
    decided = [(p.judge_x > 0.5, said == "x") for _, p, said in rows
               if said in ("x", "y") and p.judge_x is not None and p.judge_x != 0.5]
    n = len(decided)
    if not n:
        return {"n": 0, "agreement_with_judge": None, "agreement_with_judge_ci95": None,
                "kappa": None}
    agree = sum(j == h for j, h in decided)
    lo, hi = wilson(agree, n)
    kappa = cohen_kappa([(int(j), int(h)) for j, h in decided])
    return {"n": n, "agreement_with_judge": round(agree / n, 4),
            "agreement_with_judge_ci95": [round(lo, 4), round(hi, 4)],
            "kappa": None if kappa is None else round(kappa, 4)}


def between_reviewers(rows: list[tuple[str, Pair, str]]) -> list[dict[str, Any]]:
    """Pairwise Cohen's kappa (and raw agreement) over the pairs both people decided."""
    said = {(reviewer, p.id): s for reviewer, p, s in rows if s in ("x", "y")}
    people = sorted({reviewer for reviewer, _ in said})
    found = []
    for a, b in itertools.combinations(people, 2):
        common = [(said[a, pid] == "x", said[b, pid] == "x") for who, pid in said
                  if who == a and (b, pid) in said]
        kappa = cohen_kappa([(int(x), int(y)) for x, y in common]) if common else None
        found.append({"reviewers": [a, b], "n": len(common),
                      "agreement": round(sum(x == y for x, y in common) / len(common), 4)
                      if common else None,
                      "kappa": None if kappa is None else round(kappa, 4)})
    return found


def gold(rows: list[tuple[str, Pair, str]]) -> list[dict[str, Any]]:
    """Each pair as the people chose it, by majority; ties and even splits are left out."""
    by_pair: dict[str, list[tuple[str, str]]] = {}
    pairs: dict[str, Pair] = {}
    for reviewer, p, s in rows:
        by_pair.setdefault(p.id, []).append((reviewer, s))
        pairs[p.id] = p
    found = []
    for pid, said in by_pair.items():
        count = Counter(s for _, s in said)
        if count["x"] == count["y"]:
            continue
        p = pairs[pid]
        chosen, rejected = (p.x, p.y) if count["x"] > count["y"] else (p.y, p.x)
        found.append({"id": pid, "prompt": p.prompt, "chosen": assistant(chosen),
                      "rejected": assistant(rejected),
                      "votes": {k: count[k] for k in ("x", "y", "tie")},
                      "reviewers": sorted({r for r, _ in said}), "source": p.source})
    return found


def review_stats(target: str | Path) -> dict[str, Any]:
    """The statistics, written with the gold file into the review's folder."""
    target = Path(target)
    rows = votes(target)
    where = paths(target)
    principles: dict[str, list[tuple[str, Pair, str]]] = {}
    for row in rows:
        for pid in row[1].principles:
            principles.setdefault(pid, []).append(row)
    figures = _agreement(rows)
    made = gold(rows)
    stats = {
        "labelled": len(rows),
        "reviewers": dict(Counter(r for r, _, _ in rows)),
        "ties": sum(s == "tie" for _, _, s in rows),
        "judge_decided": figures["n"],
        "agreement_with_judge": figures["agreement_with_judge"],
        "agreement_with_judge_ci95": figures["agreement_with_judge_ci95"],
        "kappa": figures["kappa"],
        "by_principle": {pid: _agreement(r) for pid, r in sorted(principles.items())},
        "between_reviewers": between_reviewers(rows),
        "gold_pairs": len(made), "gold": str(where.gold),
    }
    write_jsonl(where.gold, made)
    write_json(where.stats, stats)
    return stats
