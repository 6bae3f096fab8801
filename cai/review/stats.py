"""`cai review stats`: how far people agree with the judge and with each other, and the gold
file of their choices (TRL format, for `cai eval judge --data`): the circle closed, a judge
calibrated on your own reviewers.

Counted over pairs, not labels: several reviewers of one pair give it one verdict, their
majority (an even split gives none), so that a pair seen twice is not two independent
observations; how far the reviewers agree with one another is reported apart.

Kappa needs a label that varies for both raters. In judge output `x` is always the judge's
chosen reply, so "x or y" never varies for the judge and kappa over it is 0 whatever the
agreement. Kappa here is over the position chosen, A or B: the place `x` took on the page
is random per pair (the order recorded with the pair's first label), so both raters' labels
vary, and on a balanced sample kappa = (agreement - 0.5) / 0.5.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai.chat import assistant
from cai.records.rewrite import write_json, write_jsonl
from cai.review.pairs import Pair, labels, paths, preferred, read_pairs
from cai.stats import cohen_kappa, wilson


@dataclass(frozen=True)
class Vote:
    reviewer: str
    pair: Pair
    said: str  # `x`, `y` or `tie`
    order: str  # `xy` (x shown as A) or `yx`
    line: int  # its line in the reviews log


def votes(target: Path) -> list[Vote]:
    """Every standing label that is not a skip, in the order they were given."""
    pairs = {p.id: p for p in read_pairs(target)}
    found = []
    for (reviewer, pid), r in labels(paths(target).reviews).items():
        said = preferred(r["choice"], r["order"])
        if said is not None and pid in pairs:
            found.append(Vote(reviewer, pairs[pid], said, r["order"], r["_line"]))
    return sorted(found, key=lambda v: v.line)


@dataclass(frozen=True)
class Verdict:
    """What the people said of one pair: their majority (`x`, `y`, or None for a tie or an
    even split), and the pair's position order, for kappa."""

    pair: Pair
    said: str | None
    order: str
    votes: dict[str, int]
    reviewers: list[str]


def verdicts(rows: list[Vote]) -> list[Verdict]:
    """One verdict per labelled pair. Its order is the one its first label was given with:
    random per pair, and the same for every reviewer's vote in the statistics."""
    by_pair: dict[str, list[Vote]] = {}
    for v in rows:
        by_pair.setdefault(v.pair.id, []).append(v)
    found = []
    for group in by_pair.values():
        count = Counter(v.said for v in group)
        said = None if count["x"] == count["y"] else "x" if count["x"] > count["y"] else "y"
        found.append(Verdict(group[0].pair, said, group[0].order,
                             {k: count[k] for k in ("x", "y", "tie")},
                             sorted({v.reviewer for v in group})))
    return found


def position(said: str, order: str) -> int:
    """1 where the reply preferred was shown as A, else 0."""
    return int((said == "x") == (order == "xy"))


def _agreement(found: list[Verdict]) -> dict[str, Any]:
    """People against the judge, over pairs the judge decided and the people did too."""
    decided = []
    for v in found:
        judge = v.pair.judge_x
        if v.said is not None and judge is not None and judge != 0.5:
            decided.append((position("x" if judge > 0.5 else "y", v.order),
                            position(v.said, v.order)))
    n = len(decided)
    if not n:
        return {"pairs": 0, "agreement_with_judge": None, "agreement_with_judge_ci95": None,
                "kappa": None}
    agree = sum(j == h for j, h in decided)
    lo, hi = wilson(agree, n)
    kappa = cohen_kappa(decided)
    return {"pairs": n, "agreement_with_judge": round(agree / n, 4),
            "agreement_with_judge_ci95": [round(lo, 4), round(hi, 4)],
            "kappa": None if kappa is None else round(kappa, 4)}


def between_reviewers(rows: list[Vote], found: list[Verdict]) -> list[dict[str, Any]]:
    """Raw agreement and Cohen's kappa (over the position chosen) for each two reviewers,
    over the pairs both decided."""
    order = {v.pair.id: v.order for v in found}
    said = {(v.reviewer, v.pair.id): v.said for v in rows if v.said in ("x", "y")}
    people = sorted({reviewer for reviewer, _ in said})
    result = []
    for a, b in itertools.combinations(people, 2):
        common = [(position(said[a, pid], order[pid]), position(said[b, pid], order[pid]))
                  for who, pid in said if who == a and (b, pid) in said]
        kappa = cohen_kappa(common) if common else None
        result.append({"reviewers": [a, b], "pairs": len(common),
                       "agreement": round(sum(x == y for x, y in common) / len(common), 4)
                       if common else None,
                       "kappa": None if kappa is None else round(kappa, 4)})
    return result


def gold(found: list[Verdict]) -> list[dict[str, Any]]:
    """Each pair as the people chose it, by majority; ties and even splits are left out.
    Pairs the judge could not decide are in it too: there a person's label is all there is."""
    rows = []
    for v in found:
        if v.said is None:
            continue
        p = v.pair
        chosen, rejected = (p.x, p.y) if v.said == "x" else (p.y, p.x)
        rows.append({"id": p.id, "prompt": p.prompt, "chosen": assistant(chosen),
                     "rejected": assistant(rejected), "votes": v.votes,
                     "reviewers": v.reviewers, "judge_x": p.judge_x, "source": p.source})
    return rows


def review_stats(target: str | Path) -> dict[str, Any]:
    """The statistics, written with the gold file into the review's folder."""
    target = Path(target)
    rows = votes(target)
    where = paths(target)
    found = verdicts(rows)
    by_principle: dict[str, list[Verdict]] = {}
    for v in found:
        for pid in v.pair.principles:
            by_principle.setdefault(pid, []).append(v)
    figures = _agreement(found)
    made = gold(found)
    stats = {
        "labels": len(rows),
        "pairs": len(found),
        "reviewers": dict(Counter(v.reviewer for v in rows)),
        "ties": sum(v.said == "tie" for v in rows),
        "pairs_without_majority": sum(v.said is None for v in found),
        "judge_decided": figures["pairs"],
        "agreement_with_judge": figures["agreement_with_judge"],
        "agreement_with_judge_ci95": figures["agreement_with_judge_ci95"],
        "kappa": figures["kappa"],
        "by_principle": {pid: _agreement(v) for pid, v in sorted(by_principle.items())},
        "between_reviewers": between_reviewers(rows, found),
        "unjudged_in_gold": sum(v.said is not None and v.pair.unjudged for v in found),
        "gold_pairs": len(made), "gold": str(where.gold),
    }
    write_jsonl(where.gold, made)
    write_json(where.stats, stats)
    return stats
