"""Removing rows that overlap an evaluation set (`cai data decontaminate`).

After normalising case, whitespace and punctuation, a row is contaminated if it shares an
n-gram of N words with an evaluation prompt, or contains it whole; evaluation prompts shorter
than N words match only whole (as a run of words inside the row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cai.data.dedup import normalise
from cai.data.rows import Row


@dataclass(frozen=True)
class Contaminated:
    row: Row
    match: Row  # the evaluation row it overlaps
    ngram: str  # the shared words


def find_contaminated(rows: Sequence[Row], against: Sequence[Row],
                      n: int = 13) -> list[Contaminated]:
    grams: dict[str, Row] = {}
    short: dict[str, Row] = {}
    for e in against:
        words = normalise(e.text).split()
        if len(words) < n:
            if words:
                short.setdefault(" ".join(words), e)
            continue
        for i in range(len(words) - n + 1):
            grams.setdefault(" ".join(words[i:i + n]), e)
    lengths = sorted({len(s.split()) for s in short})
    found = []
    for row in rows:
        words = normalise(row.text).split()
        hit = next(((g, grams[g]) for i in range(len(words) - n + 1)
                    if (g := " ".join(words[i:i + n])) in grams), None)
        if hit is None:  # a short evaluation prompt inside the row, as a run of words
            hit = next(((g, short[g]) for k in lengths for i in range(len(words) - k + 1)
                        if (g := " ".join(words[i:i + k])) in short), None)
        if hit is not None:
            found.append(Contaminated(row, hit[1], hit[0]))
    return found
