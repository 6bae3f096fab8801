"""A seeded mix of several files by ratio (`cai data mix A.jsonl:0.6 B.jsonl:0.4 --n N`):
how helpfulness prompts are mixed with red-team prompts. Each row records its source."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai.data.rows import read_rows
from cai.errors import CaiError


def parse_parts(parts: Sequence[str]) -> list[tuple[Path, float]]:
    """`FILE:RATIO` arguments, checked: positive ratios that add up to 1."""
    parsed = []
    for part in parts:
        name, sep, ratio = part.rpartition(":")
        try:
            value = float(ratio)
        except ValueError:
            value = -1.0
        if not sep or not name or not value > 0:
            raise CaiError(f"'{part}': give FILE:RATIO with a ratio above 0, e.g. "
                           "helpful.jsonl:0.6")
        parsed.append((Path(name), value))
    total = sum(r for _, r in parsed)
    if abs(total - 1) > 1e-6:
        raise CaiError(f"the ratios add up to {total:g}; make them add up to 1")
    return parsed


def shares(ratios: Sequence[float], n: int) -> list[int]:
    """Row counts for each part that add up to n (largest remainders get the leftovers).

    >>> shares([0.6, 0.4], 5)
    [3, 2]
    """
    exact = [r * n for r in ratios]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[:n - sum(counts)]:
        counts[i] += 1
    return counts


def mix(parts: Sequence[str], n: int, seed: int = 0,
        field: str = "prompt") -> list[dict[str, Any]]:
    """The mixed rows, shuffled by `seed`; every file is read before anything is drawn."""
    parsed = parse_parts(parts)
    sources = [(path, read_rows(path, field)) for path, _ in parsed]
    rng = random.Random(seed)
    chosen: list[dict[str, Any]] = []
    seen: set[str] = set()
    for (path, rows), count in zip(sources, shares([r for _, r in parsed], n), strict=True):
        if count > len(rows):
            raise CaiError(f"{path} has {len(rows)} rows, and the mix needs {count} of them; "
                           "lower --n or its ratio")
        for row in rng.sample(rows, count):
            rid = row.id if row.id not in seen else f"{path.stem}:{row.id}"
            seen.add(rid)
            chosen.append({**row.record, "id": rid, "source": str(path)})
    rng.shuffle(chosen)
    return chosen
