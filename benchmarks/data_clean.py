"""Dedup and decontamination at scale (issue 11: 100,000 rows in under a minute on one core).

    .venv/bin/python -m benchmarks.data_clean [--n 100000] [--against 10000]

Rows are made from the words of the shipped evaluation suite and the labelled answers in
tests/data, in seeded random orders of 12 to 40 words, with every tenth row a copy of an
earlier one with one word changed. Only the longer of those copies are near duplicates at the
default threshold (one word changed in 12 words leaves a 3-gram Jaccard similarity of 0.54),
so fewer are found than planted. Every hundredth row carries an evaluation row whole, so that
the decontamination benchmark matches as well as scans. The process is pinned to one core where
the OS allows. Results go to benchmarks/results/data_clean.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from datetime import datetime, timezone

from benchmarks.run import ROOT, machine
from cai.data.contamination import find_contaminated
from cai.data.dedup import find_duplicates
from cai.data.rows import Row


def make(n: int, seed: int) -> list[Row]:
    vocabulary = sorted({w for name in ("refusal_labels.jsonl", "refusal_heldout.jsonl")
                         for line in (ROOT / "tests" / "data" / name).read_text().splitlines()
                         for w in json.loads(line)["text"].split()})
    rng = random.Random(seed)
    texts: list[str] = []
    for i in range(n):
        if i % 10 == 9:
            words = rng.choice(texts).split()
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
        else:
            words = rng.choices(vocabulary, k=rng.randint(12, 40))
        texts.append(" ".join(words))
    return [Row(i, str(i), t, {"id": str(i), "prompt": t}) for i, t in enumerate(texts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--against", type=int, default=10_000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rows, evaluation = make(args.n, 1), make(args.against, 2)
    planted = list(range(0, args.n, 100))
    for i in planted:  # an evaluation prompt inside a training row
        text = f"{rows[i].text} {evaluation[i % args.against].text}"
        rows[i] = Row(i, str(i), text, {"id": str(i), "prompt": text})
    start = time.perf_counter()
    duplicates = find_duplicates(rows)
    dedup_s = time.perf_counter() - start
    start = time.perf_counter()
    contaminated = find_contaminated(rows, evaluation)
    decontaminate_s = time.perf_counter() - start
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
        "rows": args.n, "evaluation_rows": args.against,
        "dedup_seconds": round(dedup_s, 2), "duplicates_found": len(duplicates),
        "near_duplicates_planted": args.n // 10,
        "decontaminate_seconds": round(decontaminate_s, 2),
        "contaminated_found": len(contaminated), "contaminated_planted": len(planted),
        "target_seconds": 60,
    }
    (ROOT / "benchmarks" / "results" / "data_clean.json").write_text(
        json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}))


if __name__ == "__main__":
    main()
