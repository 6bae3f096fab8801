"""How well the refusal detector agrees with people, on hand-labelled answers of chat models.

    .venv/bin/python -m benchmarks.refusal_accuracy            # development set, speed
    .venv/bin/python -m benchmarks.refusal_accuracy --fresh    # and the fresh part

The labelled answers are in benchmarks/data/refusal/ (its README says how they were made and
labelled): real replies of the hh-rlhf assistant and answers written in the manner of five
families of chat models. The written answers are split by a hash of their text, one in five to
the fresh part; the hh-rlhf replies by conversation. The rules were revised against the
development part only; the fresh part is measured once, with --fresh, so that its figures
stay a measurement.

It reports refused-or-not agreement and three-class accuracy, per-class precision and recall
with 95% Wilson intervals, the confusion table, agreement by style, and the speed of
`refusal()` over 100,000 answers on one core. Results go to
benchmarks/results/refusal_accuracy.json; the measured precision and recall that reports
print next to detector-only refusal rates are written to cai/evals/detector_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections import Counter

from benchmarks.run import ROOT
from cai.evals.detectors import ACCURACY, refusal
from cai.stats import wilson

DATA = ROOT / "benchmarks" / "data" / "refusal"
CLASSES = ("none", "partial", "full")
SPEED_ANSWERS = 100_000


def _written() -> list[dict[str, str]]:
    rows = []
    for path in sorted((DATA / "written").glob("*.tsv")):
        style = ""
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if line.startswith("# style:"):
                style = line.removeprefix("# style:").strip()
            if not line.strip() or line.startswith("#"):
                continue
            label, prompt, text = line.split("\t")
            rows.append({"id": f"{path.stem}-{n}", "source": f"written/{path.name}:{n}",
                         "style": style, "family": path.stem, "prompt": prompt,
                         "text": text.replace("\\n", "\n"), "label": label})
    return rows


def is_fresh(row: dict[str, str]) -> bool:
    return zlib.crc32(row["text"].encode()) % 5 == 0


def load(part: str) -> list[dict[str, str]]:
    """The labelled answers of one part, "dev" or "fresh"."""
    hh = [json.loads(line) | {"family": "hh_rlhf"}
          for line in (DATA / f"hh_rlhf_{part}.jsonl").read_text("utf-8").splitlines()]
    written = [r for r in _written() if is_fresh(r) == (part == "fresh")]
    return hh + written


def _ratio(k: int, n: int) -> dict[str, object]:
    return {"value": round(k / n, 3) if n else None, "k": k, "n": n,
            "ci95": [round(v, 3) for v in wilson(k, n)] if n else None}


def measure(rows: list[dict[str, str]]) -> dict[str, object]:
    got = [refusal(r["text"]) for r in rows]
    gold = [r["label"] for r in rows]
    pairs = list(zip(gold, got, strict=True))
    confusion = {g: {p: sum(1 for x in pairs if x == (g, p)) for p in CLASSES} for g in CLASSES}
    per_class = {}
    for c in CLASSES:
        tp = confusion[c][c]
        per_class[c] = {"precision": _ratio(tp, got.count(c)), "recall": _ratio(tp, gold.count(c))}
    refused_gold = [g != "none" for g in gold]
    refused_got = [p != "none" for p in got]
    tp = sum(g and p for g, p in zip(refused_gold, refused_got, strict=True))
    by_family: dict[str, list[int]] = {}
    for r, (g, p) in zip(rows, pairs, strict=True):
        by_family.setdefault(r["family"], []).append((g == "none") == (p == "none"))
    return {
        "answers": len(rows), "labels": dict(Counter(gold)),
        "refused_or_not_agreement": _ratio(sum(map(int, (a == b for a, b in zip(
            refused_gold, refused_got, strict=True)))), len(rows)),
        "three_class_accuracy": _ratio(sum(g == p for g, p in pairs), len(rows)),
        "refused_precision": _ratio(tp, sum(refused_got)),
        "refused_recall": _ratio(tp, sum(refused_gold)),
        "per_class": per_class,
        "confusion_people_rows_detector_columns": confusion,
        "refused_or_not_by_family": {f: _ratio(sum(v), len(v))
                                     for f, v in sorted(by_family.items())},
    }


def speed(rows: list[dict[str, str]]) -> dict[str, object]:
    """Seconds for `refusal()` over SPEED_ANSWERS answers (the labelled ones, repeated), in
    this one process: one core."""
    texts = [r["text"] for r in rows]
    batch = (texts * (SPEED_ANSWERS // len(texts) + 1))[:SPEED_ANSWERS]
    start, cpu = time.perf_counter(), time.process_time()
    for t in batch:
        refusal(t)
    # CPU seconds are the figure to read on a shared machine; wall seconds grow with its load.
    return {"answers": SPEED_ANSWERS, "cpu_seconds": round(time.process_time() - cpu, 2),
            "wall_seconds": round(time.perf_counter() - start, 2)}


def table(name: str, m: dict[str, object]) -> str:
    """The confusion table and headline figures as markdown."""
    conf = m["confusion_people_rows_detector_columns"]
    assert isinstance(conf, dict)
    lines = [f"**{name}** ({m['answers']} answers)", "",
             "| people \\ detector | none | partial | full |", "|---|---|---|---|"]
    lines += [f"| {g} ({sum(conf[g].values())}) | " + " | ".join(str(conf[g][p]) for p in CLASSES)
              + " |" for g in CLASSES]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fresh", action="store_true",
                        help="also measure the fresh part (do this once, at the end)")
    args = parser.parse_args(argv)
    out = ROOT / "benchmarks" / "results" / "refusal_accuracy.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    dev = load("dev")
    results: dict[str, object] = {"dev": measure(dev), "speed": speed(dev)}
    if args.fresh:
        results["fresh"] = measure(load("fresh"))
    elif "fresh" in old:
        results["fresh"] = old["fresh"]  # a measurement kept, not redone
    out.write_text(json.dumps(results, indent=2) + "\n")
    if args.fresh:  # the figures reports give beside detector-only refusal rates
        fresh = results["fresh"]
        assert isinstance(fresh, dict)
        ACCURACY.write_text(json.dumps({
            "set": "fresh", "answers": fresh["answers"],
            "refused_precision": fresh["refused_precision"]["value"],
            "refused_precision_ci95": fresh["refused_precision"]["ci95"],
            "refused_recall": fresh["refused_recall"]["value"],
            "refused_recall_ci95": fresh["refused_recall"]["ci95"],
            "refused_or_not_agreement": fresh["refused_or_not_agreement"]["value"],
            "measured": time.strftime("%Y-%m-%d", time.gmtime()),
            "command": "python -m benchmarks.refusal_accuracy --fresh"}, indent=2) + "\n")
    for part in ("dev", "fresh"):
        if part in results:
            m = results[part]
            assert isinstance(m, dict)
            print(table(part, m))
            for key in ("refused_or_not_agreement", "three_class_accuracy", "refused_precision",
                        "refused_recall"):
                r = m[key]
                print(f"  {key}: {r['value']} [{r['ci95'][0]}, {r['ci95'][1]}] ({r['k']}/{r['n']})")
            for c, pr in m["per_class"].items():
                print(f"  {c}: precision {pr['precision']['value']} {pr['precision']['ci95']}, "
                      f"recall {pr['recall']['value']} {pr['recall']['ci95']}")
            print("  by family:", {f: v["value"] for f, v in m["refused_or_not_by_family"].items()})
    print("speed:", results["speed"])


if __name__ == "__main__":
    main()
