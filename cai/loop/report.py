"""Where a loop run is and what it found: `cai loop status`, and the morning report
(report.json, report.md, report.html in the run folder), rebuilt after every stage from the
history and the stages' own reports."""

from __future__ import annotations

import fcntl
import json
import shlex
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cai.errors import CaiError
from cai.loop.history import ENDED, LOCK, spending
from cai.loop.processes import marked
from cai.records.read import read_json, read_jsonl

LOOP_FIX = "rerun the same `cai loop` command, or start a new run with another --out"

HISTORY, RUN_FILE = "history.jsonl", "run.json"
# The file whose lines count a running stage's progress, and what they count.
PROGRESS = {"sample": "responses.jsonl", "revise": "sft.jsonl", "judge": "comparisons.jsonl",
            "eval": "judgements.jsonl", "eval-vs-start": "judgements.jsonl",
            "eval-start": "judgements.jsonl", "generate": "requests.jsonl"}


def _read(path: Path) -> dict[str, Any] | None:
    return read_json(path, LOOP_FIX) if path.is_file() else None


def running(folder: Path) -> bool:
    """Whether a `cai loop` holds the run's lock now."""
    path = folder / LOCK
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def status(folder: Path, live: bool | None = None) -> dict[str, Any]:
    """Where the run is; `live` says whether a loop runs on it (found from its lock if not
    given: the loop itself knows)."""
    if not (folder / HISTORY).is_file():
        raise CaiError(f"{folder}: no loop run here (no {HISTORY}); start one with "
                       "`cai loop CONFIG --out FOLDER`")
    events = list(read_jsonl(folder / HISTORY))
    begin = next(e for e in reversed(events) if e["event"] == "begin")
    end = events[-1] if events[-1]["event"] == "end" else None
    live = running(folder) if live is None else live
    started = [e for e in events if e["event"] == "start"]
    done = {e["key"] for e in events if e["event"] == "done"}
    current = started[-1] if started and started[-1]["key"] not in done else None
    if live:
        state = "running"
    elif end is not None:
        state = "finished" if end["finished"] else (
            "interrupted" if end["reason"] == "interrupted" else "failed")
    else:
        state = "interrupted"  # killed: no end was written
    gates = [e for e in events if e["event"] == "gate"]
    by_stage = spending(folder, events)
    spent = by_stage.pop("total")
    latest = {e["key"]: e for e in events if e["event"] in (*ENDED, "failed")}
    moves = [e for e in events if e["event"] in ("start", "done")]
    return {
        "folder": str(folder), "state": state,
        "finished": bool(end and end["finished"]) and not live,
        "reason": end["reason"] if end and not live else None,
        "iteration": moves[-1].get("iteration", 0) if moves else 0,
        "iterations": begin["iterations"],
        "stage": current["stage"] if current else None,
        "progress": _progress(current) if current and live else None,
        "spent": spent, "spent_by_stage": by_stage,
        # The run's processes now: the running stage's, or ones a killed loop left behind.
        "processes": [{"pid": pid, "command": command}
                      for pid, command in marked(folder.resolve())],
        "gates": [{"iteration": g["iteration"], "promoted": g["promoted"],
                   "failed": [x["name"] for x in g["gates"] if not x["passed"]]}
                  for g in gates],
        "policy": next((g["candidate"] for g in reversed(gates) if g["promoted"]),
                       begin["policy"]),
        # Stages a rerun runs again: stopped by the budget or the deadline, or incomplete.
        "unfinished": [{k: e.get(k) for k in ("iteration", "stage", "event", "reason", "items",
                                              "items_done", "items_failed")}
                       for e in latest.values() if e["event"] in ("stopped", "incomplete")],
        "estimated_finish": _finish(events, begin["iterations"]) if live else None,
        "resume": None if live or (end and end["finished"] and not end.get("resumable"))
        else resume_command(begin["config"], folder, begin["iterations"], begin.get("limit")),
    }


def resume_command(config: str, folder: Path, iterations: int, limit: int | None) -> str:
    """The `cai loop` command that goes on with a run: its config, --iterations and --limit
    as it was started with (the loop refuses another --limit)."""
    argv = ["cai", "loop", config, "--out", str(folder), "--iterations", str(iterations)]
    return shlex.join(argv + (["--limit", str(limit)] if limit is not None else []))


def _progress(start: dict[str, Any]) -> dict[str, Any] | None:
    out = Path(start["out"])
    name = PROGRESS.get(start["stage"])
    if name is not None:
        path = out / name
        return {"records": sum(1 for _ in open(path, encoding="utf-8")) if path.exists() else 0}
    steps = sorted(out.glob("checkpoint-*/trainer_state.json"), key=lambda p: p.stat().st_mtime)
    if start["stage"].startswith("train") and steps:
        state = json.loads(steps[-1].read_text(encoding="utf-8"))
        return {"step": state.get("global_step"), "max_steps": state.get("max_steps")}
    return None


def _finish(events: list[dict[str, Any]], iterations: int) -> str | None:
    """Now plus the time the stages still to run took when last measured."""
    done = [e for e in events if e["event"] == "done"]
    measured = {e["stage"]: e["seconds"] for e in done if e.get("iteration", 0) > 0}
    if not measured:
        return None
    last = max(e.get("iteration", 0) for e in done)
    finished_now = {e["stage"] for e in done if e.get("iteration") == last}
    left = sum(s for name, s in measured.items() if name not in finished_now)
    left += (iterations - last) * sum(measured.values())
    return (datetime.now(timezone.utc) + timedelta(seconds=left)).isoformat(timespec="seconds")


# ---------------------------------------------------------------------- the morning report


def iteration_figures(folder: Path, i: int, events: list[dict[str, Any]]) -> dict[str, Any]:
    d = folder / f"iter-{i:02d}"
    ev = _read(d / "eval" / "report.json") or {}
    vs_start = _read(d / "eval-vs-start" / "report.json") if i > 1 else ev
    judge = (_read(d / "judge" / "summary.json") or {}).get("judge") or {}
    gate = next((e for e in reversed(events) if e["event"] == "gate" and e["iteration"] == i),
                None)
    stages = {e["stage"]: {"seconds": e["seconds"], "cost_usd": e.get("cost_usd", 0)}
              for e in events if e["event"] == "done" and e.get("iteration") == i}
    ref = ev.get("reference") or {}
    return {
        "iteration": i,
        "win_rate_vs_current": ev.get("win_rate"), "win_rate_ci95": ev.get("win_rate_ci95"),
        "win_rate_length_controlled": ev.get("win_rate_length_controlled"),
        "win_rate_vs_start": (vs_start or {}).get("win_rate"),
        "candidate": {k: ev.get(k) for k in METRICS}, "current": {k: ref.get(k) for k in METRICS},
        "judge": {"pairs": judge.get("pairs"), "flip_rate": judge.get("position_flip_rate"),
                  "longer_won": judge.get("longer_won_share"), "panel": judge.get("panel")},
        "data": {"prompts": _lines(d / "prompts.jsonl"), "sft": _lines(d / "revise/sft.jsonl"),
                 "pairs": _lines(d / "judge/prefs.jsonl"),
                 "low_margin": _lines(d / "judge/low_margin.jsonl")},
        "gates": gate["gates"] if gate else None,
        "promoted": gate["promoted"] if gate else None,
        "candidate_model": gate["candidate"] if gate else None,
        "stages": stages,
        "training": training_figures([d / name for name in stages if name.startswith("train-")]),
        "evaluator_note": ev.get("evaluator_note"),
    }


def training_figures(folders: list[Path]) -> list[dict[str, Any]]:
    """What each training stage of an iteration says of itself: its rows and steps, the loss
    at the first and last step and held out, DPO's held-out reward accuracy, and GRPO's
    reward at the first and last step with the judge's guards averaged over the steps."""
    found = []
    for folder in folders:
        s = _read(folder / "train_summary.json")
        if not s:
            continue
        losses = [e["loss"] for e in s.get("losses") or []]
        grpo = s.get("grpo") or {}
        steps = grpo.get("steps") or []
        rewards = [e["reward"] for e in steps]
        found.append({
            "method": s.get("kind"), "rows": s.get("train_rows"), "steps": s.get("steps"),
            "first_loss": _at(losses, 0), "last_loss": _at(losses, -1),
            "heldout_loss": (s.get("heldout") or {}).get("eval_loss"),
            "reward_accuracy": s.get("implicit_reward_accuracy"),
            # A pairwise reward averages 0.5 over every group by construction: no trend to show.
            "reward_mode": grpo.get("reward"),
            "first_reward": _at(rewards, 0), "last_reward": _at(rewards, -1),
            "flip_rate": _mean(steps, "flip_rate"), "length_corr": _mean(steps, "length_corr"),
        })
    return found


def _at(values: list[float], k: int) -> float | None:
    return round(values[k], 4) if values else None


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if key in r]
    return round(sum(values) / len(values), 4) if values else None


METRICS = ("over_refusal_rate", "unsafe_compliance_rate", "mean_length", "hedge_rate",
           "boilerplate_rate")


def _lines(path: Path) -> int | None:
    return sum(1 for _ in open(path, encoding="utf-8")) if path.exists() else None


def build_loop_report(folder: Path, live: bool | None = None) -> dict[str, Any]:
    events = list(read_jsonl(folder / HISTORY))
    run = _read(folder / RUN_FILE) or {}
    seen = sorted({e["iteration"] for e in events if e.get("iteration", 0) > 0})
    start = _read(folder / "eval-start" / "report.json") or {}
    return {
        "status": status(folder, live), "run": run,
        "start": {k: start.get(k) for k in METRICS},
        "iterations": [iteration_figures(folder, i, events) for i in seen],
        "prep": {e["stage"]: {"seconds": e["seconds"], "cost_usd": e.get("cost_usd", 0)}
                 for e in events if e["event"] == "done" and e.get("iteration") == 0},
        "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_loop_report(folder: Path, live: bool | None = None) -> dict[str, Any]:
    from cai.reports import loop as views
    from cai.reports.render import write

    report = build_loop_report(folder, live)
    write(folder, "loop", report, views.plots)
    return report
