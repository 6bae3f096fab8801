"""A panel of judges: every comparison goes to each judge, and the soft label is their mean.

One judge is one set of biases; a panel of judges from different model families agrees with
people better than one large judge (Verga et al. 2024, "Replacing Judges with Juries"). Each
judge sees the same comparison under the same principle in both orders, so their verdicts
differ only by the judge. The pair's soft label is the mean of the judges' order-averaged
P(x better), or a weighted mean with weights from each judge's agreement with people on a
gold set (`cai eval judge` writes them). A judge that refuses a comparison (a 400, a
refusal) or gives no verdict is left out of that pair's mean, and the record says so; a passing
failure (its retries spent) fails the item for a rerun, as with one judge.

A panel of one is the judge itself: its records are exactly those of a single judge.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai.chat import Message
from cai.constitution import Constitution
from cai.errors import CaiError, InputError
from cai.stages.judge import Comparison, Judge, JudgeSettings, PrincipleJudgement
from cai.stats import fleiss_kappa
from cai.templates import Templates

NO_VERDICT = "no principle had both orders parsed"


@dataclass(frozen=True)
class Seat:
    """One judge's say on one comparison: its comparison, or why it has none."""

    judge: str
    identity: str
    weight: float
    comparison: Comparison | None
    left_out: str | None = None  # why this judge is not in the pair's mean

    @property
    def p_x(self) -> float | None:
        return None if self.left_out else self.comparison.p_x  # type: ignore[union-attr]

    @property
    def vote(self) -> int | None:
        """1 for x, 0 for y, None when this judge did not decide (no verdict, or a tie)."""
        p = self.p_x
        return None if p is None or p == 0.5 else int(p > 0.5)

    def to_dict(self) -> dict[str, Any]:
        c = self.comparison
        return {"judge": self.judge, "judge_identity": self.identity, "weight": self.weight,
                "p_x": self.p_x, "left_out": self.left_out,
                "judgements": [j.to_dict() for j in c.judgements] if c else []}


@dataclass(frozen=True)
class PanelComparison:
    """x against y as the whole panel judged it; p_x is the (weighted) mean of the seats
    that gave a verdict."""

    key: str
    seats: tuple[Seat, ...]

    @property
    def p_x(self) -> float | None:
        voting = [(s.weight, s.p_x) for s in self.seats if s.p_x is not None]
        total = sum(w for w, _ in voting)
        if not voting or total <= 0:
            return None
        return sum(w * p for w, p in voting) / total

    @property
    def judgements(self) -> tuple[PrincipleJudgement, ...]:
        """Every judge's judgements, in the panel's order."""
        return tuple(j for s in self.seats if s.comparison for j in s.comparison.judgements)

    @property
    def split(self) -> bool:
        """Whether the judges that decided went different ways."""
        return len({s.vote for s in self.seats if s.vote is not None}) > 1

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "p_x": self.p_x, "split": self.split,
                "panel": [s.to_dict() for s in self.seats]}


class Panel:
    """Judges that each judge every comparison. They share the constitution, templates and
    settings (one drawn principle per comparison is the same for all: it is drawn by the
    comparison's key and the seed), and differ in their model."""

    def __init__(self, judges: Sequence[Judge], weights: Sequence[float] | None = None):
        if not judges:
            raise CaiError("a panel needs at least one judge")
        specs = [j.client.spec for j in judges]
        if len(set(specs)) < len(specs):
            raise CaiError(f"the judge {_repeated(specs)} is given twice; give each judge once")
        if len({(j.settings, j.constitution.sha256 if j.constitution else None)
                for j in judges}) > 1:
            raise CaiError("the judges of a panel share their constitution and settings; make "
                           "them with the same ones")
        if weights is not None and len(weights) != len(judges):
            raise CaiError(f"{len(weights)} weights for {len(judges)} judges; give one a judge")
        if weights is not None and not all(_positive(w) for w in weights):
            raise CaiError(f"panel weights {list(weights)}: each must be a positive number")
        self.judges = tuple(judges)
        self.weights = tuple(weights) if weights is not None else (1.0,) * len(judges)

    @property
    def lead(self) -> Judge:
        return self.judges[0]

    @property
    def constitution(self) -> Constitution | None:
        return self.lead.constitution

    @property
    def templates(self) -> Templates:
        return self.lead.templates

    @property
    def settings(self) -> JudgeSettings:
        return self.lead.settings

    @property
    def template(self) -> str:
        return self.lead.template

    @property
    def clients(self) -> list[Any]:
        return [j.client for j in self.judges]

    @property
    def verdict_path(self) -> str | list[str]:
        paths = [j.verdict_path for j in self.judges]
        return paths if self.is_panel else paths[0]

    @property
    def is_panel(self) -> bool:
        return len(self.judges) > 1

    def provenance(self) -> dict[str, Any]:
        """Who judged: one judge's spec and identity, or the panel's, in order, with weights."""
        if not self.is_panel:
            return {"judge": self.lead.client.spec, "judge_identity": self.lead.client.identity}
        return {"judge": [j.client.spec for j in self.judges],
                "judge_identity": [j.client.identity for j in self.judges],
                "panel_weights": list(self.weights)}

    async def compare(self, conversation: Sequence[Message], x: str, y: str,
                      key: str) -> Comparison | PanelComparison:
        if not self.is_panel:
            return await self.lead.compare(conversation, x, y, key)
        said = await asyncio.gather(*(j.compare(conversation, x, y, key) for j in self.judges),
                                    return_exceptions=True)
        # A passing failure (a 429, a 5xx, a timeout, its retries spent) fails the whole item,
        # as with one judge: a rerun asks again, and the other judges' answers, each awaited
        # here to the end, come from the cache. Only a judge that answered and gave no
        # verdict (a refusal, a 400, an unparsed answer) is left out of the pair.
        comparisons = []
        for c in said:
            if isinstance(c, BaseException):
                raise c
            comparisons.append(c)
        return PanelComparison(key, tuple(
            Seat(j.client.spec, j.client.identity, w, c, _left_out(c))
            for j, w, c in zip(self.judges, self.weights, comparisons, strict=True)))


def _left_out(c: Comparison) -> str | None:
    """Why a judge that answered is not in the pair's mean, or None when it is."""
    if c.p_x is not None:
        return None
    failed = [o.verdict.raw for j in c.judgements for o in (j.x_first, j.x_second)
              if o.verdict.status == "failed"]
    return f"failed: {failed[0]}" if failed else NO_VERDICT


def as_panel(judge: Judge | Panel) -> Panel:
    """A panel as it is, or one judge as a panel of one."""
    return judge if isinstance(judge, Panel) else Panel([judge])


def _positive(w: float) -> bool:
    return math.isfinite(w) and w > 0  # NaN and infinity too would make every label NaN


def _repeated(specs: list[str]) -> str:
    return next(s for s in specs if specs.count(s) > 1)


def read_weights(path: Path, specs: Sequence[str]) -> list[float]:
    """Each judge's weight from a file `cai eval judge` wrote with a panel (panel_weights.json,
    `{"weights": {spec: agreement with people}}`): every judge of the panel must be in it."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        weights = data["weights"]
        if not isinstance(weights, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError) as e:
        reason = getattr(e, "strerror", None) or "not a panel weights file"
        raise InputError(path, None, f"{reason}; give the panel_weights.json that `cai eval "
                         "judge` wrote with the same --judge options") from None
    found = []
    for spec in specs:
        w = weights.get(spec)
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not _positive(w):
            why = "has no weight" if w is None else f"has weight {w!r}, not a positive number"
            raise InputError(path, None, f"the judge {spec} {why}; measure it with `cai eval "
                             "judge` in this panel, or leave it out of the panel")
        found.append(float(w))
    return found


# ---------------------------------------------------------------- what a panel says of itself


def judgements_of(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """Every judgement of a written comparison: one judge's, or each judge's of a panel."""
    if "panel" in comparison:
        return [j for seat in comparison["panel"] for j in seat["judgements"]]
    return list(comparison["judgements"])


def seats_of(comparison: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A written panel comparison's seats as `panel_figures` reads them: each judge's P(x
    better), whether it was left out, and whether its orders agreed, principle by principle.
    None for a single judge's comparison."""
    if "panel" not in comparison:
        return None
    return [{"judge": s["judge"], "p": s["p_x"], "left_out": s["left_out"],
             "agree": [j["agree"] for j in s["judgements"]]} for s in comparison["panel"]]


def panel_figures(panels: Sequence[Sequence[dict[str, Any]] | None]) -> dict[str, Any] | None:
    """Agreement between the judges over a run's panel comparisons (their `seats_of`):
    Fleiss' kappa over the pairs every judge decided, each two judges' raw agreement, and per
    judge its position-flip rate, how often it went against the panel's majority, and how
    often it was left out. None when there was no panel."""
    found = [list(seats) for seats in panels if seats]
    if not found:
        return None
    specs = [s["judge"] for s in found[0]]
    votes = [[_vote(s["p"]) for s in seats] for seats in found]
    every = [v for v in votes if None not in v]
    per_judge = []
    for k, spec in enumerate(specs):
        orders = [a for seats in found for a in seats[k]["agree"] if a is not None]
        against = [v[k] != majority for v in votes
                   if v[k] is not None and (majority := _majority(v)) is not None]
        per_judge.append({
            "judge": spec,
            "decided": sum(v[k] is not None for v in votes),
            "left_out": sum(seats[k]["left_out"] is not None for seats in found),
            "position_flip_rate": _share(sum(not a for a in orders), len(orders)),
            "against_majority": _share(sum(against), len(against)),
        })
    pairs = []
    for a, b in itertools.combinations(range(len(specs)), 2):
        both = [(v[a], v[b]) for v in votes if v[a] is not None and v[b] is not None]
        pairs.append({"judges": [specs[a], specs[b]], "pairs": len(both),
                      "agreement": _share(sum(x == y for x, y in both), len(both))})
    kappa = fleiss_kappa([[v.count(1), v.count(0)] for v in every])
    return {
        "judges": specs, "comparisons": len(found),
        "split": sum(len({x for x in v if x is not None}) > 1 for v in votes),
        "decided_by_all": len(every),
        "fleiss_kappa": None if kappa is None else round(kappa, 4),
        "pairwise_agreement": pairs, "per_judge": per_judge,
    }


def _vote(p: float | None) -> int | None:
    return None if p is None or p == 0.5 else int(p > 0.5)


def _majority(votes: list[int | None]) -> int | None:
    """The side more than half of the deciding judges took, if any."""
    cast = [v for v in votes if v is not None]
    for side in (0, 1):
        if 2 * cast.count(side) > len(cast):
            return side
    return None


def _share(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None
