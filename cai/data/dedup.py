"""Exact and near-duplicate removal (`cai data dedup`).

Exact duplicates are found after normalising case, whitespace and punctuation. Near
duplicates are found with MinHash and locality-sensitive hashing (datasketch) over word
3-grams, and confirmed with the exact Jaccard similarity of the two rows' 3-grams: LSH is
asked for candidates at a lower threshold than the one kept, so that a row of 80 words with
one word changed (similarity about 0.93) is never missed at the default 0.8, while two
prompts that only share a topic stay far below it. Lines shared by many rows (a common system
prompt, a template's frame) are stripped before hashing, so that templated data does not
collapse into one cluster. The first occurrence is kept.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from cai.data.rows import Row

NUM_PERM = 128
SHINGLE = 3  # words per shingle
CANDIDATE_SLACK = 0.15  # LSH threshold below the one kept, against false negatives
SHARED_LINE_SHARE = 0.5  # a line in at least this share of rows (and 3) is boilerplate
_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """Lowercase words only: case, whitespace and punctuation do not tell rows apart."""
    return " ".join(_WORD.findall(text.lower()))


@dataclass(frozen=True)
class Duplicate:
    row: Row
    of: Row  # the row kept
    similarity: float  # 1.0 for exact duplicates
    exact: bool


def shared_lines(rows: Sequence[Row]) -> set[str]:
    """Lines that recur in many rows: the frame of a template, a common system prompt."""
    counts = Counter(line for r in rows for line in {normalise(x) for x in r.text.splitlines()}
                     if line)
    least = max(3, SHARED_LINE_SHARE * len(rows))
    return {line for line, n in counts.items() if n >= least}


def shingles(text: str, strip: set[str]) -> set[str]:
    words = " ".join(n for line in text.splitlines()
                     if (n := normalise(line)) and n not in strip).split()
    if len(words) < SHINGLE:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def find_duplicates(rows: Sequence[Row], threshold: float = 0.8, *,
                    strip_shared: bool = True) -> list[Duplicate]:
    """Every row that repeats an earlier one, exactly or at `threshold` Jaccard or above."""
    from datasketch import MinHash, MinHashLSH

    strip = shared_lines(rows) if strip_shared else set()
    lsh = MinHashLSH(threshold=max(0.05, threshold - CANDIDATE_SLACK), num_perm=NUM_PERM)
    exact: dict[str, Row] = {}
    kept: dict[str, tuple[Row, set[str]]] = {}
    found: list[Duplicate] = []
    for i, row in enumerate(rows):
        key = normalise(row.text)
        if key in exact:
            found.append(Duplicate(row, exact[key], 1.0, True))
            continue
        exact[key] = row
        grams = shingles(row.text, strip)
        digest = MinHash(num_perm=NUM_PERM, seed=1)
        for g in grams:
            digest.update(g.encode("utf-8"))
        best: tuple[float, Row] | None = None
        for name in lsh.query(digest):
            other, other_grams = kept[name]
            similarity = len(grams & other_grams) / len(grams | other_grams) if grams else 0.0
            if similarity >= threshold and (best is None or similarity > best[0]):
                best = (similarity, other)
        if best is not None:
            found.append(Duplicate(row, best[1], round(best[0], 4), False))
            continue
        name = str(i)
        lsh.insert(name, digest)
        kept[name] = (row, grams)
    return found
