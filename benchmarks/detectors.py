"""The rule-based detectors over 100,000 answers, on one core (issue 10: under 30 s).

    .venv/bin/python -m benchmarks.detectors [--n 100000]

The answers are the hand-written labelled sets of tests/data, cycled with a counter in each
so that no two are the same text, about 30 words each on average. The process is pinned to
one core where the OS allows (sched_setaffinity). Results go to
benchmarks/results/detectors.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timezone

from benchmarks.run import ROOT, machine
from cai.evals import detectors


def answers(n: int) -> list[str]:
    texts = [json.loads(line)["text"]
             for name in ("refusal_labels.jsonl", "refusal_heldout.jsonl")
             for line in (ROOT / "tests" / "data" / name).read_text().splitlines()]
    return [f"{texts[i % len(texts)]} (answer {i})" for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    texts = answers(args.n)
    detectors.detect(texts[0])  # compile the phrase lists before timing
    start, cpu = time.perf_counter(), time.process_time()
    found = [detectors.detect(t) for t in texts]
    per_answer = time.perf_counter() - start
    common = detectors.recurring(texts)
    flagged = sum(bool(detectors.recurring_in(t, common)) for t in texts)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "answers": len(texts),
        "words": sum(f.words for f in found), "detect_seconds": round(per_answer, 2),
        "with_recurring_boilerplate_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
        "answers_per_second": round(len(texts) / wall), "target_seconds": 30,
        "refusals": {k: sum(f.refusal == k for f in found) for k in ("none", "partial", "full")},
        "recurring_flagged": flagged,
    }
    out = ROOT / "benchmarks" / "results" / "detectors.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("answers", "detect_seconds",
                                             "with_recurring_boilerplate_seconds",
                                             "cpu_seconds", "answers_per_second")}))


if __name__ == "__main__":
    main()
