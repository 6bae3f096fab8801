"""Precision and recall of the refusal detector on the labelled answers in tests/data.

    .venv/bin/python -m benchmarks.refusal_accuracy

- refusal_labels.jsonl: the development set (330 answers built from written pieces); the
  phrase lists were written against it, so its figures are an upper bound.
- refusal_heldout.jsonl: 60 answers written by hand before the rules were revised on their
  mistakes (81.7% none-vs-refusal agreement before that revision); no longer unseen.
- refusal_fresh.jsonl: 30 answers written after the last revision and measured once; the
  only figures here on answers the rules were not fitted to. Small: read its interval.

Results go to benchmarks/results/refusal_accuracy.json.
"""

from __future__ import annotations

import json

from benchmarks.run import ROOT
from cai.evals.calibration import wilson
from cai.evals.detectors import refusal

SETS = ("refusal_labels.jsonl", "refusal_heldout.jsonl", "refusal_fresh.jsonl")
CLASSES = ("none", "partial", "full")


def measure(name: str) -> dict[str, object]:
    rows = [json.loads(line) for line in (ROOT / "tests" / "data" / name).read_text().splitlines()]
    got = [refusal(r["text"]) for r in rows]
    gold = [r["label"] for r in rows]
    per_class = {}
    for c in CLASSES:
        tp = sum(g == c and p == c for g, p in zip(gold, got, strict=True))
        predicted, actual = got.count(c), gold.count(c)
        per_class[c] = {"precision": round(tp / predicted, 3) if predicted else None,
                        "recall": round(tp / actual, 3) if actual else None, "n": actual}
    binary = sum((g == "none") == (p == "none") for g, p in zip(gold, got, strict=True))
    exact = sum(g == p for g, p in zip(gold, got, strict=True))
    return {"answers": len(rows), "per_class": per_class,
            "none_vs_refusal_agreement": round(binary / len(rows), 3),
            "none_vs_refusal_ci95": [round(v, 3) for v in wilson(binary, len(rows))],
            "three_class_accuracy": round(exact / len(rows), 3)}


def main() -> None:
    results = {name: measure(name) for name in SETS}
    out = ROOT / "benchmarks" / "results" / "refusal_accuracy.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
