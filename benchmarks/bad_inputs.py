"""What a version of cai does with each row of the bad-input table (tests/bad_inputs.py).

    .venv/bin/python -m benchmarks.bad_inputs --label after
    .venv/bin/python -m benchmarks.bad_inputs --source /tmp/cai-main --label before

Every row runs as `python -m cai` in a process of its own, with the checkout given by
--source first on PYTHONPATH, under a 3 GiB address-space limit and a 60 s timeout, in a
fresh folder. Its outcome is the first of these that holds:

- blow-up: out of memory, or killed by a signal;
- no answer in 60 s: a hang, or work started on the bad input (a training run, say);
- traceback: Python's traceback reached the user;
- damaged output: a file that was there before the command was changed or removed;
- silent acceptance: exit 0;
- unclear error: it failed, but not with exit 2 and one `error:` line naming the file (and
  line), or it left files behind;
- clear error: all that the table asks.

The rows that need an unwritable folder or a full disk mount a tmpfs, so they need root; they
are left out (and counted as such) without it. Results go to benchmarks/results/bad_inputs.json
under the label.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.bad_inputs import Case, cases
from tests.test_bad_input import snapshot, write_files

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "bad_inputs.json"
MEMORY = 3 << 30
TIMEOUT = 60
OUTCOMES = ("clear error", "unclear error", "silent acceptance", "damaged output", "traceback",
            "no answer in 60 s", "blow-up")


def cai(argv: list[str], cwd: Path, source: Path) -> tuple[int | None, str]:
    """Exit status (None: timed out) and stderr of `python -m cai ARGV` from `source`."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))

    env = {**os.environ, "PYTHONPATH": str(source), "XDG_CACHE_HOME": str(cwd / ".cache")}
    try:
        done = subprocess.run([sys.executable, "-m", "cai", *argv], cwd=cwd, env=env, text=True,
                              capture_output=True, timeout=TIMEOUT, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        return None, f"no answer in {TIMEOUT} s"
    return done.returncode, done.stderr


def mounted(options: str) -> Path | None:
    folder = Path(tempfile.mkdtemp(prefix="cai-bad-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True)
    return folder if done.returncode == 0 else None


def outcome(case: Case, source: Path) -> tuple[str, str]:
    places: dict[str, Path] = {}
    if case.needs is not None:
        place = mounted("ro,size=64k" if case.needs == "ro" else "size=64k")
        if place is None:
            return "not run", "needs root to mount a tmpfs"
        places["{ro}" if case.needs == "ro" else "{full}"] = place
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "work"
            folder.mkdir()
            return _run(case, folder, places, source)
    finally:
        for place in places.values():
            subprocess.run(["umount", str(place)], check=False)
            place.rmdir()


def _run(case: Case, folder: Path, places: dict[str, Path], source: Path) -> tuple[str, str]:
    def fill(text: str) -> str:
        for key, value in places.items():
            text = text.replace(key, str(value))
        return text

    write_files(case, folder)
    for step in case.setup:
        if step[0] == "!write":
            (folder / step[1]).write_text(step[2], encoding="utf-8")
            continue
        code, err = cai(list(step), folder, source)
        if code != 0:
            return "not run", f"setup failed: {err[-300:]}"
    before = snapshot(folder, *places.values())
    code, err = cai([fill(a) for a in case.argv], folder, source)
    after = snapshot(folder, *places.values())
    after = {k: v for k, v in after.items() if "/.cache" not in k}
    before = {k: v for k, v in before.items() if "/.cache" not in k}
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    last = (errors[0] if errors else err.strip().splitlines()[-1] if err.strip() else "")[:300]
    if code is None:
        return "no answer in 60 s", last
    if code < 0 or "MemoryError" in err:
        return "blow-up", last or f"exit {code}"
    if "Traceback (most recent call last)" in err:
        return "traceback", last
    if any(after.get(k) != v for k, v in before.items()):
        return "damaged output", last or f"exit {code}"
    if code == 0:
        return "silent acceptance", "exit 0"
    left = not case.partial_ok and after != before
    if code == 2 and len(errors) == 1 and fill(case.names) in errors[0] and not left:
        return "clear error", last
    return "unclear error", (last + (" (left files behind)" if left else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="a checkout of cai")
    parser.add_argument("--label", required=True, help="the name of this run in the results")
    parser.add_argument("--only", default=None, help="rows whose id contains this")
    args = parser.parse_args()
    rows = [c for c in cases() if args.only is None or args.only in c.id]
    found = []
    for i, case in enumerate(rows, 1):
        result, detail = outcome(case, args.source.resolve())
        found.append({"row": case.id, "outcome": result, "detail": detail})
        print(f"[{i}/{len(rows)}] {result}: {case.id}", flush=True)
    commit = subprocess.run(["git", "-C", str(args.source), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    counts = Counter(r["outcome"] for r in found)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[args.label] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit or None, "source": str(args.source),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rows": len(found), "counts": {k: counts.get(k, 0) for k in (*OUTCOMES, "not run")},
        "outcomes": found}
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(results[args.label]["counts"]))


if __name__ == "__main__":
    main()
