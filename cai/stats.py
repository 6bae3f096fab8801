"""Statistics the evaluations, the review page and the loop's gates share: small, with no
imports from the rest of cai, so that any layer may use them."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def cohen_kappa(labels: Sequence[tuple[int, int]]) -> float | None:
    """Cohen's kappa of (judge, human) binary labels; None when it is undefined."""
    n = len(labels)
    if n == 0:
        return None
    observed = sum(a == b for a, b in labels) / n
    judge_yes = sum(a for a, _ in labels) / n
    human_yes = sum(b for _, b in labels) / n
    expected = judge_yes * human_yes + (1 - judge_yes) * (1 - human_yes)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa: agreement among raters beyond chance. `counts[i][j]` is how many raters
    put item i in category j; every item has the same number of raters (at least two). None
    when it is undefined (no items, or every rating in one category)."""
    if not counts:
        return None
    raters = sum(counts[0])
    if raters < 2 or any(sum(row) != raters for row in counts):
        raise ValueError("Fleiss' kappa needs the same number of raters, two or more, per item")
    n = len(counts)
    shares = [sum(row[j] for row in counts) / (n * raters) for j in range(len(counts[0]))]
    observed = sum((sum(c * c for c in row) - raters) / (raters * (raters - 1))
                   for row in counts) / n
    expected = sum(p * p for p in shares)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def bootstrap_kappa(labels: Sequence[tuple[int, int]], *, seed: int = 0,
                    rounds: int = 1000) -> list[float | None] | None:
    """A 95% percentile-bootstrap interval for kappa."""
    if len(labels) < 2:
        return None
    rng = random.Random(seed)
    values = sorted(k for _ in range(rounds)
                    if (k := cohen_kappa(rng.choices(labels, k=len(labels)))) is not None)
    if not values:
        return None
    return [_round(values[int(0.025 * (len(values) - 1))]),
            _round(values[int(0.975 * (len(values) - 1))])]


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a proportion."""
    phat = successes / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)
