"""The self-alignment loop: generate, critique and revise, judge, train, evaluate, promote.

One run folder holds everything: the config and constitution as used (with their hashes, in
run.json), the prompt pool, a folder per iteration with each stage's output, the checkpoints,
`history.jsonl` (one line per stage event and gate), `loop.log` (every child's output) and
the morning report. The history is the run's memory: a rerun of the same command replays it,
skips every stage it records as done, and goes on with the first that is not, which resumes
the way its command does (records, the response cache, training checkpoints). A stage is done
only when its command got through its whole input: one stopped by the budget or the deadline
is recorded as `stopped`, one with more failed items than the config allows as `incomplete`,
and a rerun runs either again.

Stages run as child processes (see plan.py), each in a process group of its own, that die
with the loop at every depth, so that no stage goes on writing after a `kill -9` of the loop
(see processes.py).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from cai.errors import CaiError
from cai.folders import claim
from cai.loop.config import config_hash, read_loop_config
from cai.loop.gates import apply_gates
from cai.loop.history import LEDGER_FILE, History, locked, now, spending
from cai.loop.plan import ANSWERS, Run, Stage, iteration_stages, prep_stages
from cai.loop.processes import (
    ask_for_sigkill_with_parent,
    child_env,
    end_all,
    refuse_leftovers,
)
from cai.loop.report import LOOP_FIX, resume_command, running
from cai.models.budget import LEDGER, LEDGER_STAGE, parse_deadline
from cai.records.read import read_json, read_jsonl
from cai.records.rewrite import write_json, write_jsonl
from cai.redact import redact_all, redact_urls

HISTORY, LOG, RUN_FILE = "history.jsonl", "loop.log", "run.json"


class Stop(Exception):
    """The loop ends as planned (a gate, a budget, the deadline): `finished` is true.
    `resumable`: a rerun (with a larger budget or a later deadline) goes on."""

    def __init__(self, reason: str, resumable: bool = True):
        super().__init__(reason)
        self.resumable = resumable


class StageFailed(CaiError):
    pass


STOPS = {signal.SIGINT, signal.SIGTERM}  # Ctrl-C and `kill`: the loop stops, as planned


def _die_with_parent(parent: int) -> None:
    """In the child, before it runs: SIGKILL when the loop dies, exit at once if the loop is
    already gone, and take Ctrl-C and `kill` again (held by the loop while it forked)."""
    ask_for_sigkill_with_parent()
    if os.getppid() != parent:
        os._exit(1)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)


def _start(command: list[str],
           env: dict[str, str]) -> tuple[subprocess.Popen[bytes], set[Any]]:
    """Start a stage in a process group of its own (so that the loop can end it whole, and
    a Ctrl-C in the terminal reaches the loop alone), with Ctrl-C and `kill` held while it
    forks: raised in the fork's after-fork hooks, Python would drop them ("Exception
    ignored") and the loop would go on. Returns the child and the signal mask to restore
    once the caller can end the stage, when a stop held meanwhile comes."""
    parent = os.getpid()
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                                 preexec_fn=lambda: _die_with_parent(parent))
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise
    return child, held


class Loop:
    def __init__(self, config_path: Path, folder: Path, *, iterations: int | None = None,
                 limit: int | None = None, echo: Any = print):
        config, data = read_loop_config(config_path)
        if iterations is not None:
            config = config.model_copy(update={"iterations": iterations})
        self.config, self.data, self.echo = config, data, echo
        self.config_path = config_path.resolve()
        folder = folder.resolve()  # the history's paths must hold from any working folder
        self.run = Run(folder, config, config_path.resolve().parent, limit, policy=config.policy)
        self.history = History(folder / HISTORY)
        self.deadline = parse_deadline(config.budget.deadline)
        self.child: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ the whole run

    def go(self) -> dict[str, Any]:
        # `kill` (SIGTERM) stops the loop as Ctrl-C does: the end is recorded, the running
        # stage killed with it; a rerun resumes.
        signal.signal(signal.SIGTERM, _interrupt)
        folder = self.run.folder
        if not (folder / RUN_FILE).is_file() and not running(folder):  # (in use: refused below)
            claim(folder, "loop", overwrite=None)  # a run of an older cai is known by run.json
        with locked(self.run.folder):
            refuse_leftovers(folder)
            self.write_run_file()
            self.history.add(event="begin", iterations=self.config.iterations,
                             policy=self.config.policy, config=str(self.config_path),
                             limit=self.run.limit, pid=os.getpid())
            resumable = False
            try:
                for stage in self.stages():
                    self.step(stage)
                n = self.config.iterations
                reason = f"{n} iteration{'s' if n != 1 else ''} done"
            except Stop as stop:
                reason, resumable = str(stop), stop.resumable
            except StageFailed as e:
                self.history.add(event="end", finished=False, reason=str(e))
                self.report(live=False)
                raise
            except KeyboardInterrupt:
                self.history.add(event="end", finished=False, reason="interrupted")
                self.report(live=False)
                raise
            self.history.add(event="end", finished=True, reason=reason, resumable=resumable)
            self.report(live=False)
            return {"finished": True, "reason": reason, "policy": self.run.policy,
                    "resume": self.resume() if resumable else None}

    def resume(self) -> str:
        """The command that goes on with this run."""
        return resume_command(str(self.config_path), self.run.folder, self.config.iterations,
                              self.run.limit)

    def stages(self) -> Iterator[Stage]:
        yield from prep_stages(self.run)
        self.run.policy_answers = self.run.folder / "eval-start" / ANSWERS
        for i in range(1, self.config.iterations + 1):
            yield from iteration_stages(self.run, i, partial(self.prepare, i),
                                        partial(self.gate, i))

    def step(self, stage: Stage) -> None:
        done = self.history.done(stage.key)
        if done is None:
            self.check_budget(stage)
            done = self.execute(stage)
            self.report()
        if stage.name == "gate":
            self.promote(stage.iteration, done["result"])

    def write_run_file(self) -> None:
        """run.json, the config and the constitution as used; a changed config is refused,
        but for `budget` and `iterations` (they shape no data). The deadline is fixed here."""
        path = self.run.folder / RUN_FILE
        shown = redact_all(self.data)  # the copies keep no credentials of its base_urls
        known = read_json(path, LOOP_FIX) if path.exists() else None
        if known is not None:
            self.check_same_run(known, shown)
            run = {**known, "config": shown}
        else:
            run = self.first_start(shown)
        run["deadline"] = self.fix_deadline(run)
        (self.run.folder / "config.yaml").write_text(
            yaml.safe_dump(shown, sort_keys=False), encoding="utf-8")
        write_json(path, run)

    def check_same_run(self, known: dict[str, Any], shown: dict[str, Any]) -> None:
        where = f"{self.run.folder} was started with"
        if known.get("limit") != self.run.limit:
            given = "no --limit" if known.get("limit") is None else f"--limit {known['limit']}"
            raise CaiError(f"{where} {given}; give the same to resume, or use another --out")
        if "config" in known:
            changed = _changed(_shaping(redact_all(known["config"])), _shaping(shown))
        else:  # a run of an older cai: only the hash of its config (all but iterations)
            old = {k: v for k, v in self.data.items() if k != "iterations"}
            changed = [] if known.get("config_sha256") == config_hash(old) else ["the config"]
        if changed:
            raise CaiError(f"{where} another config ({', '.join(changed)} changed); put it "
                           "back to resume, or use another --out (only `budget` and "
                           "`iterations` may change)")

    def first_start(self, shown: dict[str, Any]) -> dict[str, Any]:
        from cai.constitution import load_constitution
        from cai.paths import resolve_constitution

        source = resolve_constitution(self.run.path(self.config.constitution)
                                      if self.config.constitution.endswith((".yaml", ".yml"))
                                      else self.config.constitution)
        text = source.read_text(encoding="utf-8")
        Path(self.run.constitution).write_text(text, encoding="utf-8")
        return {"config_sha256": config_hash(_shaping(self.data)), "limit": self.run.limit,
                "constitution": load_constitution(source).provenance,
                "constitution_source": str(source), "started": now(), "config": shown}

    def fix_deadline(self, run: dict[str, Any]) -> dict[str, Any] | None:
        """The deadline as a clock time, kept in run.json: a rerun keeps it, not now plus
        the duration again. A changed duration counts from the run's first start; a changed
        clock time is the next one."""
        spec, known = self.config.budget.deadline, run.get("deadline")
        if spec is None:
            self.deadline = None
            return None
        if known and known["spec"] == spec:
            at = known["at"]
        else:
            at = parse_deadline(spec) or 0.0
            if ":" not in spec:  # a duration
                at += datetime.fromisoformat(run["started"]).timestamp() - time.time()
        self.deadline = at
        return {"spec": spec, "at": at,
                "time": datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")}

    # ------------------------------------------------------------------ one stage

    def execute(self, stage: Stage) -> dict[str, Any]:
        self.history.add(event="start", key=stage.key, iteration=stage.iteration,
                         stage=stage.name, out=str(stage.out),
                         command=shlex.join(["cai", *stage.argv]) if stage.argv else None)
        self.echo(f"[{time.strftime('%H:%M:%S')}] iteration {stage.iteration}: {stage.name} ...")
        started = time.monotonic()
        skip = self.nothing_to_do(stage)
        figures: dict[str, Any] = {}
        if skip is not None:
            result = skip
        elif stage.action is not None:
            result = stage.action()
        else:
            self.child_process(stage)
            while stage.batch and self.figures(stage)["deferred"]:
                self.wait_for_batches(stage)
                self.child_process(stage)  # takes the results from the cache, queues the rest
            result, figures = {}, self.figures(stage)
        seconds = round(time.monotonic() - started, 1)
        counts = self.counts(stage) if stage.argv and skip is None else {}
        state, why = self.completeness(stage, figures, counts)
        event = self.history.add(event=state, key=stage.key, iteration=stage.iteration,
                                 stage=stage.name, out=str(stage.out), seconds=seconds,
                                 result=result, **figures, **counts,
                                 **({"reason": why} if why else {}))
        self.echo(f"[{time.strftime('%H:%M:%S')}] iteration {stage.iteration}: {stage.name} "
                  f"{state} in {seconds:.0f}s" + (f": {why}" if why else ""))
        if state == "stopped":
            raise Stop(f"{stage.name} stopped: {why}")
        if state == "incomplete":
            raise StageFailed(f"iteration {stage.iteration}, {stage.name} is incomplete: {why}."
                              f" Its failures are in {stage.out}; to try them again: "
                              f"{self.resume()}")
        return event

    def counts(self, stage: Stage) -> dict[str, int]:
        """The items of a stage's input, done and failed, summed over its summaries
        (an evaluation answers, then grades)."""
        summaries = _summaries(stage.out)
        return {"items": sum(s.get("total", 0) for s in summaries),
                "items_done": sum(s.get("already_done", 0) + s.get("done", 0)
                                  for s in summaries),
                "items_failed": sum(s.get("failed", 0) for s in summaries)}

    def completeness(self, stage: Stage, figures: dict[str, Any],
                     counts: dict[str, int]) -> tuple[str, str | None]:
        """done, stopped (by the budget or the deadline) or incomplete (more failed items
        than max_failed_fraction allows, in any of its summaries), with the reason."""
        if figures.get("stopped_reason"):
            return "stopped", f"{figures['stopped_reason']} ({_progress(stage, counts)})"
        kind = "eval" if stage.name.startswith("eval") else stage.name
        allowed = getattr(self.config.max_failed_fraction, kind, None)
        if allowed is None:  # a training stage, or one without items
            return "done", None
        worst = max(((s.get("failed", 0) / s["total"], s) for s in _summaries(stage.out)
                     if s.get("total")), default=None, key=lambda x: x[0])
        if worst is None or worst[0] <= allowed:
            return "done", None
        share, s = worst
        return "incomplete", (f"{s['failed']} of {s['total']} items of {s['stage']} failed "
                              f"({share:.0%}; max_failed_fraction.{kind} is {allowed:g})")

    def nothing_to_do(self, stage: Stage) -> dict[str, Any] | None:
        """A training stage whose data file holds no rows is skipped, with the reason, and
        the next stage starts from the model it would have started from."""
        if stage.name in ("eval", "eval-vs-start") and self.candidate(stage.iteration) == \
                self.run.policy:
            return {"skipped": "nothing was trained in this iteration"}
        if not stage.name.startswith("train-"):
            return None
        flag = "--data" if "--data" in stage.argv else "--prompts"
        data = Path(stage.argv[stage.argv.index(flag) + 1])
        if data.exists() and data.read_text(encoding="utf-8").strip():
            return None
        model = self.trained(stage.argv[stage.argv.index("--model") + 1])
        self.echo(f"iteration {stage.iteration}: {stage.name} skipped: no rows in {data}")
        return {"skipped": f"no rows in {data}", "model": model}

    def trained(self, model: str) -> str:
        """The model a training output stands for: itself, or, where that training was
        skipped, the model it would have started from."""
        prefix, path = model.split(":", 1) if model.startswith(("hf:", "vllm:")) else ("", model)
        skipped = {e["out"]: e["result"]["model"] for e in self.history.events
                   if e.get("event") == "done" and (e.get("result") or {}).get("skipped")
                   and e.get("stage", "").startswith("train-")}
        if path not in skipped:
            return model
        inner = skipped[path]
        return f"{prefix}:{inner}" if prefix and inner != "local" else inner

    def argv(self, stage: Stage) -> list[str]:
        """The stage's command, with models that stand for skipped trainings resolved."""
        argv = list(stage.argv)
        if "--model" in argv:
            i = argv.index("--model") + 1
            argv[i] = self.trained(argv[i])
        return argv

    def child_process(self, stage: Stage, spends_for: str | None = None) -> None:
        """Run the stage's command; what it spends goes in the ledger under `spends_for`
        (default: the stage's key)."""
        argv = [*self.argv(stage), *(self.budget_options() if stage.budgeted else []),
                *(["--batch"] if stage.batch else [])]
        if stage.name.startswith("train-") and not stage.budgeted and self.deadline:
            argv += ["--deadline", f"{max(1, int(self.deadline - time.time()))}s"]
        command = [*(stage.launcher or (sys.executable,)), "-m", "cai", *argv]
        log = self.run.folder / LOG
        with open(log, "ab") as f:
            f.write(redact_urls(f"\n[{now()}] $ {shlex.join(['cai', *argv])}\n").encode())
            f.flush()
            start = f.tell()
            self.child, held = _start(command, {
                **os.environ, "PYTHONUNBUFFERED": "1", **child_env(self.run.folder),
                LEDGER: str(self.run.folder / LEDGER_FILE), LEDGER_STAGE: spends_for or stage.key})
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a stop held: raised here
                # Through the loop, not straight into the file: a child's error may quote a
                # --base-url, and loop.log keeps no credentials.
                assert self.child.stdout is not None
                for line in self.child.stdout:
                    f.write(redact_urls(line.decode("utf-8", "replace")).encode())
                    f.flush()
                code = self.child.wait()
            except BaseException:
                self.child.kill()
                self.child.wait()
                raise
            finally:
                # Whatever the stage left (torchrun's workers, in sessions of their own),
                # however it ended: nothing of it outlives the stage.
                end_all(self.run.folder, self.child.pid)
                self.child = None
        if code != 0:
            reason = _last_error(log, start) or f"exit status {code}"
            self.history.add(event="failed", key=stage.key, iteration=stage.iteration,
                             stage=stage.name, reason=reason, exit_status=code)
            raise StageFailed(f"iteration {stage.iteration}, {stage.name} failed: {reason}. "
                              f"See {log}; rerun the same `cai loop` command to resume")

    def figures(self, stage: Stage) -> dict[str, Any]:
        """What a stage spent and whether it stopped early, from its summaries."""
        summaries = [read_json(p, LOOP_FIX) for folder in
                     (stage.out, stage.out / "reference") if folder.is_dir()
                     for p in sorted(folder.glob("*summary.json"))]
        # What it spent by the ledger: every attempt and batch pass, a trainer's judge too.
        spent = spending(self.run.folder, []).get(stage.key, {})
        return {
            "cost_usd": spent.get("cost_usd", 0.0), "tokens": spent.get("tokens", 0),
            "requests": spent.get("requests", 0),
            "cache_hits": sum(s.get("cache_hits", 0) for s in summaries),
            "stopped_reason": next((s["stopped_reason"] for s in summaries
                                    if s.get("stopped_reason")), None),
            "deferred": sum(s.get("deferred", 0) for s in summaries),
        }

    def wait_for_batches(self, stage: Stage) -> None:
        """Collect the stage's provider batches (`cai batch collect`) until none is running,
        waiting `batch_poll` between tries; the deadline still holds."""
        from cai.models.provider_batch import load_state

        poll = max(1.0, (parse_deadline(self.config.batch_poll) or 0) - time.time())
        collect = Stage(stage.iteration, "batch-collect", stage.out,
                        ["batch", "collect", "--out", str(stage.out), *self.url_options()])
        while True:
            self.child_process(collect, spends_for=stage.key)
            running = [b for b in load_state(stage.out)["batches"] if not b["collected"]]
            if not running:
                return
            self.check_budget(stage)
            self.echo(f"iteration {stage.iteration}: {stage.name}: {len(running)} batch(es) "
                      f"still running; next look in {poll:.0f}s")
            time.sleep(poll)

    # ------------------------------------------------------------------ budget and deadline

    def url_options(self) -> list[str]:
        return [o for url in self.config.base_urls for o in ("--base-url", url)]

    def budget_options(self) -> list[str]:
        b, spent = self.config.budget, self.history.spent()
        options = self.url_options()
        if b.max_cost is not None:
            options += ["--max-cost", f"{max(0.0, b.max_cost - spent['cost_usd']):.6f}"]
        if b.max_tokens is not None:
            options += ["--max-tokens", str(max(0, int(b.max_tokens - spent["tokens"])))]
        if self.deadline is not None:
            options += ["--deadline", f"{max(1, int(self.deadline - time.time()))}s"]
        return options

    def check_budget(self, stage: Stage) -> None:
        """No stage starts that the budget cannot pay for, or that would end after the
        deadline by the time it took last iteration."""
        b, spent = self.config.budget, self.history.spent()
        if b.max_cost is not None and spent["cost_usd"] >= b.max_cost:
            raise Stop(f"the budget of ${b.max_cost} is spent (${spent['cost_usd']:.4f})")
        if b.max_tokens is not None and spent["tokens"] >= b.max_tokens:
            raise Stop(f"the budget of {b.max_tokens} tokens is spent")
        if self.deadline is None:
            return
        left = self.deadline - time.time()
        took = self.history.seconds(stage.name, stage.iteration)
        when = time.strftime("%H:%M", time.localtime(self.deadline))
        if left <= 0:
            raise Stop(f"deadline {when} reached before {stage.name} of iteration "
                       f"{stage.iteration} began")
        if took is not None and took > left:
            raise Stop(f"deadline {when}: {stage.name} of iteration {stage.iteration} would "
                       f"not finish in time (it took {took:.0f}s before; {left:.0f}s left)")

    # ------------------------------------------------------------------ in-process steps

    def prepare(self, i: int) -> dict[str, Any]:
        """The iteration's prompts from the pool (in turn, round again when used up), checked
        against the evaluation suite, and its training config."""
        from cai.data.contamination import find_contaminated
        from cai.data.rows import read_rows

        pool = list(read_jsonl(self.run.pool))
        if not pool:
            raise StageFailed(f"{self.run.pool}: no prompts left after deduplication and "
                              "decontamination; give more prompts")
        k = self.run.per_iteration
        rows = [pool[((i - 1) * k + n) % len(pool)] for n in range(min(k, len(pool)))]
        d = self.run.iter_dir(i)
        write_jsonl(d / "prompts.jsonl", rows)
        overlap = find_contaminated(read_rows(d / "prompts.jsonl"), read_rows(self.run.suite),
                                    13)
        if overlap:  # the pool was decontaminated: this would be a bug, never trained on
            raise StageFailed(f"{len(overlap)} prompts of iteration {i} overlap the held-out "
                              "evaluation suite")
        t = self.config.training
        trl = {"save_strategy": "steps", "save_steps": t.save_steps, "seed": self.config.seed,
               **t.trl}
        (d / "train.yaml").write_text(yaml.safe_dump({"trl": trl}), encoding="utf-8")
        return {"prompts": len(rows), "heldout_overlap": 0}

    def candidate(self, i: int) -> str:
        """The model this iteration trained: its last training's output, skips followed."""
        last = self.config.training.method.split("+")[-1]
        return self.trained(f"{self.config.generation}:{self.run.iter_dir(i) / f'train-{last}'}")

    def gate(self, i: int) -> dict[str, Any]:
        candidate = self.candidate(i)
        if candidate == self.run.policy:
            result = {"candidate": candidate, "promoted": False, "gates": [{
                "name": "trained", "value": None, "limit": None, "passed": False,
                "why": "no training data in this iteration: nothing to promote"}]}
            self.history.add(event="gate", iteration=i, **result)
            return result
        d = self.run.iter_dir(i)
        report = read_json(d / "eval" / "report.json", LOOP_FIX)
        # In the first iteration the current policy is the start: `eval` compared with it.
        vs_start = d / "eval-vs-start" / "report.json"
        start = report if i == 1 else read_json(vs_start, LOOP_FIX) if vs_start.is_file() \
            else None
        why = _incomplete(report) or (_incomplete(start) if start is not None else None)
        gates = [{"name": "evaluation", "value": None, "limit": None, "passed": False,
                  "why": why}] if why else apply_gates(self.config.gates, report, start)
        result = {"candidate": candidate, "promoted": all(g["passed"] for g in gates),
                  "gates": gates}
        self.history.add(event="gate", iteration=i, **result)
        return result

    def promote(self, i: int, result: dict[str, Any]) -> None:
        d = self.run.iter_dir(i)
        if result["promoted"]:
            self.run.policy = result["candidate"]
            self.run.policy_answers = d / "eval" / ANSWERS
            self.echo(f"iteration {i}: promoted {result['candidate']}")
            return
        failed = ", ".join(g["name"] for g in result["gates"] if not g["passed"])
        self.echo(f"iteration {i}: not promoted (failed: {failed}); the policy stays "
                  f"{self.run.policy}")
        if self.config.on_gate_fail == "stop":
            raise Stop(f"iteration {i}: the candidate failed the gates ({failed}); "
                       "on_gate_fail is stop", resumable=False)

    def report(self, live: bool = True) -> None:
        from cai.loop.report import write_loop_report

        write_loop_report(self.run.folder, live)


def _summaries(out: Path) -> list[dict[str, Any]]:
    """The summaries a stage's command wrote (a stage summary has a `stage` key)."""
    found = [read_json(p, LOOP_FIX) for folder in (out, out / "reference") if folder.is_dir()
             for p in sorted(folder.glob("*summary.json"))]
    return [s for s in found if "stage" in s]


def _progress(stage: Stage, counts: dict[str, int]) -> str:
    """How far a stopped stage got: its items, or a training's steps (it has no items)."""
    summary = stage.out / "train_summary.json"
    if counts.get("items") or not summary.is_file():
        return f"{counts.get('items_done', 0)} of {counts.get('items', 0)} items done"
    trained = read_json(summary, LOOP_FIX)
    wanted = (trained.get("trl") or {}).get("max_steps")
    return f"at step {trained.get('steps')}" + (f" of {wanted}" if wanted else "")


def _incomplete(report: dict[str, Any]) -> str | None:
    """Why an evaluation's report cannot be gated on: it stopped early or left items out."""
    stages = report.get("stages") or {}
    stopped = [f"{name}: {s['stopped_reason']}" for name, s in stages.items()
               if s.get("stopped_reason")]
    if stopped or report.get("finished") is False:
        return ("the evaluation is incomplete (" + ("; ".join(stopped) or "not finished") +
                "): a candidate is gated only on a whole evaluation")
    return None


def _shaping(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that shape a run's data: all but the budget and the iterations."""
    return {k: v for k, v in config.items() if k not in ("budget", "iterations")}


def _changed(old: Any, new: Any, where: str = "") -> list[str]:
    """The keys (dotted) whose values differ between two configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [c for k in {**old, **new}
                for c in _changed(old.get(k), new.get(k), f"{where}.{k}" if where else k)]
    return [] if old == new else [where or "the config"]


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _last_error(log: Path, start: int) -> str | None:
    """The child's `error:` line (or its last line), from what it wrote to the log."""
    with open(log, "rb") as f:
        f.seek(start)
        lines = [x.strip() for x in f.read().decode("utf-8", "replace").splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("error:")]
    return (errors[-1].removeprefix("error:").strip() if errors else
            (lines[-1] if lines else None))


def run_loop(config: Path, folder: Path, *, iterations: int | None = None,
             limit: int | None = None, echo: Any = print) -> dict[str, Any]:
    return Loop(config, folder, iterations=iterations, limit=limit, echo=echo).go()

