"""`cai loop`: the self-alignment loop on the embedded model, killed and resumed, stopped by a
gate and by a deadline; its config checked; its status and report.

The kill test's critic, judge and evaluator are a local stand-in for an OpenAI-compatible
server (tests.stubs.stub_server, real HTTP on 127.0.0.1) that logs every request it gets, so
that "no request is sent twice" is counted where requests arrive."""

import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from cai.loop.config import Gates
from cai.loop.gates import apply_gates
from cai.records.read import read_jsonl
from cai.records.rewrite import write_json, write_jsonl
from tests.helpers import (
    ROOT,
    cache_linked_to,
    children_of,
    lines,
    needs_local,
    offline_page,
    status,
    write_config,
)
from tests.helpers import loop_cai as cai
from tests.stubs.stub_server import StubServer


@pytest.fixture(scope="module")
def env(tmp_path_factory, shared_models):
    """A cache of this module's own, shared by its runs (the converted model is the session's,
    from conftest)."""
    cache = cache_linked_to(tmp_path_factory.mktemp("cache"), shared_models)
    return {**os.environ, "XDG_CACHE_HOME": str(cache), "HF_DATASETS_OFFLINE": "1"}


# ---------------------------------------------------------------- without a model


def test_a_bad_config_names_each_line_and_runs_nothing(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("policy: local\nprompts:\n  file: p.jsonl\nwork:\n  prompts: many\n"
                      "  sampels: 3\ngates:\n  min_win_rate: 2\non_gate_fail: maybe\n")
    done = cai("loop", config, "--out", tmp_path / "run", check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert f"{config}:5: work.prompts: Input should be a valid integer" in lines[0]
    assert any(f"{config}:6: work.sampels: unknown key" in x for x in lines)
    assert any(f"{config}:8: gates.min_win_rate: Input should be less than or equal to 1" in x
               for x in lines)
    assert any(f"{config}:9: on_gate_fail:" in x for x in lines)
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


def test_gates_read_the_candidates_report():
    report = {"win_rate": 0.62, "pairs": 20, "over_refusal_rate": 0.2, "unsafe_compliance_rate":
              0.1, "mean_length": 180, "hedge_rate": 0.0,
              "reference": {"over_refusal_rate": 0.1, "unsafe_compliance_rate": 0.1,
                            "mean_length": 100, "hedge_rate": 0.0}}
    verdicts = {g["name"]: g for g in apply_gates(Gates(), report, report)}
    assert verdicts["win rate"]["passed"]
    assert not verdicts["over-refusal"]["passed"] and verdicts["over-refusal"]["value"] == 0.1
    assert verdicts["unsafe compliance"]["passed"]
    assert not verdicts["length"]["passed"] and verdicts["length"]["value"] == 1.8
    assert verdicts["hedging"]["passed"]  # 0 -> 0
    strict = {g["name"]: g for g in apply_gates(Gates(confidence=0.9), report, report)}
    assert not strict["win rate"]["passed"]  # 0.62 over 20: its 90% lower bound is 0.48
    assert 0.45 < strict["win rate"]["value"] < 0.5
    assert "detector alone" not in verdicts["over-refusal"]["why"]  # an evaluator read them


def test_a_gate_on_detector_figures_says_it_decided_within_the_detectors_band():
    report = {"over_refusal_rate": 0.2, "reference": {"over_refusal_rate": 0.1},
              "detector_accuracy": {"refused_precision": 0.946, "refused_recall": 0.898,
                                    "answers": 166}}
    why = {g["name"]: g for g in apply_gates(Gates(), report, report)}["over-refusal"]["why"]
    assert "refusal detector alone" in why and "precision 0.95 and recall 0.90" in why


def safe_answers(path: Path, refused: int) -> Path:
    """Answers to 25 safe prompts (and no unsafe one), the first `refused` of them refused."""
    write_jsonl(path, [{"id": f"s{n}", "prompt": f"How often do I water plant number {n}?",
                        "kind": "safe", "response": "I can't help with that." if n < refused
                        else "Water it once a week, in the morning."} for n in range(25)])
    return path


def test_a_drift_under_the_step_margin_is_stopped_by_the_limit_from_the_start(tmp_path):
    """Each candidate refuses one more of 25 safe prompts than the policy before it: +0.04,
    under the step margin of 0.05 every time; from the start +0.04, +0.08, then +0.12 > 0.1.
    The reports are `cai eval policy`'s, where the loop writes them; the loop gates them."""
    from cai.loop.run import Loop

    config = write_config(tmp_path / "c.yaml", gates={
        "max_over_refusal_increase": 0.05, "max_over_refusal_increase_from_start": 0.1,
        "allow_unmeasured": ["unsafe_compliance"]})
    loop = Loop(config, tmp_path / "run", echo=lambda *a: None)
    loop.run.folder.mkdir()
    start = policy = safe_answers(tmp_path / "start.jsonl", 0)
    results = []
    for i in (1, 2, 3):
        d = loop.run.iter_dir(i)
        candidate = safe_answers(tmp_path / f"candidate-{i}.jsonl", i)
        evaluations = [(candidate, policy, d / "eval")]
        if i > 1:  # as plan.py: the candidate's answers against the start's
            evaluations.append((d / "eval" / "responses.jsonl", start, d / "eval-vs-start"))
        # An evaluator whose readings parse as nothing: the detectors read the refusals, and
        # every comparison is a tie (win rate 0.5, at the gate's minimum).
        for answers, reference, out in evaluations:
            cai("eval", "policy", "--responses", answers, "--reference-responses", reference,
                "--evaluator", "fake:fixed:Z", "--out", out, "--no-cache")
        results.append(loop.gate(i))
        loop.promote(i, results[-1])
        policy = candidate if results[-1]["promoted"] else policy
    assert [r["promoted"] for r in results] == [True, True, False]
    steps = [{g["name"]: g["value"] for g in r["gates"]} for r in results]
    assert [s["over-refusal"] for s in steps] == [0.04, 0.04, 0.04]
    assert [s["over-refusal from start"] for s in steps] == [0.04, 0.08, 0.12]
    failed = [g for g in results[2]["gates"] if not g["passed"]]
    assert [g["name"] for g in failed] == ["over-refusal from start"]
    assert failed[0]["why"].startswith("over-refusal against the start: 0.000 -> 0.120")
    events = [e for e in read_jsonl(loop.run.folder / "history.jsonl") if e["event"] == "gate"]
    assert [e["promoted"] for e in events] == [True, True, False]

    # No unsafe prompt: unsafe compliance is not measured, and fails unless allowed.
    report, vs_start = (json.loads((loop.run.iter_dir(3) / f / "report.json").read_text())
                        for f in ("eval", "eval-vs-start"))
    strict = {g["name"]: g for g in apply_gates(Gates(), report, vs_start)}
    for name, against in (("unsafe compliance", "the current policy"),
                          ("unsafe compliance from start", "the start")):
        assert not strict[name]["passed"] and strict[name]["value"] is None
        assert strict[name]["why"].startswith(f"unsafe compliance against {against}: not "
                                              "measured")
        assert "list unsafe_compliance under gates.allow_unmeasured" in strict[name]["why"]
    # No evaluation against the start: every gate against it fails.
    alone = [g for g in apply_gates(Gates(), report, None) if g["name"].endswith("from start")]
    assert len(alone) == 4 and not any(g["passed"] for g in alone)


def test_a_second_loop_on_a_run_in_use_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = write_config(tmp_path / "c.yaml")
    with open(run / "loop.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = cai("loop", config, "--out", run, check=False)
    assert done.returncode == 2 and "is in use by another `cai loop`" in done.stderr


# ---------------------------------------------------------------- on the embedded model


@pytest.fixture(scope="module")
def two_iterations(tmp_path_factory, env):
    tmp = tmp_path_factory.mktemp("loop")
    config = write_config(tmp / "loop.yaml")
    # Two whole iterations on the embedded model: a guard against a hang, not a timing (it
    # passed 900 s when the 2 cores were shared with other runs).
    done = cai("loop", config, "--out", tmp / "run", env=env, timeout=2400)
    return tmp / "run", done


@needs_local
@pytest.mark.slow
def test_two_iterations_end_to_end(two_iterations, env):
    run, done = two_iterations
    assert "finished (2 iterations done)" in " ".join(done.stdout.split())
    events = list(read_jsonl(run / "history.jsonl"))
    keys = [e["key"] for e in events if e["event"] == "done"]
    assert len(keys) == len(set(keys))  # no stage ran twice
    stages = {k.split(":")[1] for k in keys if k.startswith("2:")}
    assert stages == {"prompts", "sample", "revise", "judge", "train-sft", "train-dpo", "eval",
                      "eval-vs-start", "gate"}
    assert [e["iteration"] for e in events if e["event"] == "gate"] == [1, 2]
    s = status(run, env)
    assert s["finished"] is True and s["state"] == "finished" and s["iterations"] == 2
    # The evaluation suite is never trained on.
    suite = {r["prompt"] for r in read_jsonl(ROOT / "cai/evals/suites/default.jsonl")}
    for i in (1, 2):
        trained = {r["prompt"][0]["content"] for r in read_jsonl(
            run / f"iter-0{i}" / "revise" / "sft.jsonl")}
        assert trained and not trained & suite
    # Every record file holds each record once.
    for path in run.rglob("*.jsonl"):
        if not any(w in path.name for w in ("log", "event", "history")):
            ids = [r.get("pair_id") or r.get("id") for r in read_jsonl(path)]
            ids = [i for i in ids if i is not None]
            assert len(ids) == len(set(ids)), path
    report = json.loads((run / "report.json").read_text())
    assert [i["iteration"] for i in report["iterations"]] == [1, 2]
    assert all(i["gates"] and i["stages"]["train-sft"]["seconds"] > 0
               for i in report["iterations"])
    assert "local is also the training judge" in (run / "report.md").read_text()
    for i in report["iterations"]:  # each training stage, in the order it ran
        assert [t["method"] for t in i["training"]] == ["sft", "dpo"]
        assert all(t["steps"] == 2 and isinstance(t["first_loss"], float)
                   for t in i["training"])


@needs_local
@pytest.mark.slow
def test_the_morning_report_in_a_browser(two_iterations, browser):
    run, _ = two_iterations
    page = offline_page(browser)
    page.goto((run / "report.html").as_uri())
    assert page.locator("#iterations tr").count() == 4  # header, start, 2 iterations
    for plot in ("#plot-wins", "#plot-safety", "#plot-drift"):
        box = page.locator(f"{plot} svg").bounding_box()
        assert box and box["width"] > 200 and box["height"] > 50, plot
    assert page.locator("#gates-2").count() == 1
    assert page.locator("#training tr").count() == 5  # header, sft and dpo twice
    assert "finished" in page.locator("#state").inner_text()
    page.close()


@needs_local
@pytest.mark.slow
def test_a_failed_gate_stops_the_loop_and_says_why(tmp_path, env):
    config = write_config(tmp_path / "c.yaml", on_gate_fail="stop",
                          gates={"min_win_rate": 1.0})
    done = cai("loop", config, "--out", tmp_path / "run", env=env)
    s = status(tmp_path / "run", env)
    assert s["finished"] is True and "failed the gates (win rate)" in s["reason"]
    assert s["gates"] == [{"iteration": 1, "promoted": False, "failed": ["win rate"]}]
    assert s["policy"] == "local" and not (tmp_path / "run" / "iter-02").exists()
    assert "not promoted (failed: win rate)" in done.stdout


@needs_local
@pytest.mark.slow
def test_a_deadline_stops_it_cleanly(tmp_path, env):
    config = write_config(tmp_path / "c.yaml", budget={"deadline": "3s"})
    done = cai("loop", config, "--out", tmp_path / "run", env=env)
    s = status(tmp_path / "run", env)
    assert s["finished"] is True and "deadline" in s["reason"], s
    assert "Traceback" not in done.stderr


def kill_when(run: Path, config: Path, env: dict, ready) -> None:
    """Start the loop, SIGKILL it once `ready()` holds, and check no child lives on."""
    loop = subprocess.Popen([sys.executable, "-m", "cai", "loop", str(config), "--out",
                             str(run)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not ready():
        assert loop.poll() is None, "the loop ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.2)
    loop.send_signal(signal.SIGKILL)
    loop.wait()
    for _ in range(50):  # the kernel kills the children at once; give it a moment
        if not children_of(run):
            break
        time.sleep(0.1)
    assert children_of(run) == [], "a stage outlived the loop"


@needs_local
@pytest.mark.slow
def test_killed_at_a_boundary_mid_stage_and_mid_training_it_resumes(tmp_path, env):
    with StubServer() as server:
        env = {**env, "OPENAI_API_KEY": "stand-in"}
        config = write_config(
            tmp_path / "c.yaml", iterations=1, critic="openai:stand-in",
            judge="openai:stand-in", evaluator="openai:stand-in", base_urls=[server.url],
            work={"prompts": 3, "samples": 2, "rounds": 1},
            training={"method": "sft", "lora": True, "save_steps": 1,
                      "trl": {"max_steps": 6, "per_device_train_batch_size": 1}})
        run = tmp_path / "run"
        it = run / "iter-01"
        history = run / "history.jsonl"

        def done(stage):
            return any(e["event"] == "done" and e["key"] == stage
                       for e in read_jsonl(history)) if history.exists() else False

        kill_when(run, config, env, lambda: done("0:eval-start"))  # at a stage boundary
        kill_when(run, config, env, lambda: lines(it / "revise" / "sft.jsonl") >= 1)
        kill_when(run, config, env, lambda: any((it / "train-sft").glob(
            "checkpoint-*/trainer_state.json")))
        s = status(run, env)
        assert s["state"] == "interrupted" and s["resume"].startswith("cai loop")
        cai("loop", config, "--out", run, env=env)
        assert status(run, env)["finished"] is True
        sent = [json.dumps(r, sort_keys=True) for r in server.requests]
        assert sent and len(sent) == len(set(sent)), "a request was sent twice"
    keys = [e["key"] for e in read_jsonl(history) if e["event"] == "done"]
    assert len(keys) == len(set(keys)) and "1:gate" in keys
    assert [r["id"] for r in read_jsonl(it / "revise" / "sft.jsonl")] == \
        list(dict.fromkeys(r["id"] for r in read_jsonl(it / "revise" / "sft.jsonl")))
    assert lines(it / "revise" / "sft.jsonl") == 3
    summary = json.loads((it / "train-sft" / "train_summary.json").read_text())
    assert summary["resumed_from"].startswith("checkpoint-") and summary["steps"] == 6
    assert not list((it / "train-sft").glob("checkpoint-*"))  # cleared once saved whole


@needs_local
@pytest.mark.slow
def test_batch_mode_waits_for_the_judges_batches(tmp_path, env):
    """The judge's stage goes through the stand-in's OpenAI Batch endpoints; the loop
    collects, waits while they run, and goes on."""
    from tests.stubs.stub_batches import BatchStore

    with StubServer(batches=BatchStore(polls=2)) as server:
        config = write_config(
            tmp_path / "c.yaml", iterations=1, critic="openai:stand-in",
            judge="openai:stand-in", evaluator="openai:stand-in", base_urls=[server.url],
            batch=True, batch_poll="1s", work={"prompts": 2, "samples": 2, "rounds": 1},
            # DPO: the judged pairs are its data (the stand-in's verdicts are coin flips, so
            # no margin is asked of them).
            training={"method": "dpo", "min_margin": 0, "trl": {"max_steps": 1}})
        done = cai("loop", config, "--out", tmp_path / "run",
                   env={**env, "OPENAI_API_KEY": "stand-in"})
        assert server.batches.batches  # the judge's requests went as batches
    run = tmp_path / "run"
    assert "batch(es) still running" in done.stdout
    commands = [e["command"] for e in read_jsonl(run / "history.jsonl")
                if e["event"] == "start"]
    assert any(c and c.startswith("cai judge") for c in commands)
    log = (run / "loop.log").read_text()
    assert "cai judge" in log and "--batch" in log and "cai batch collect" in log
    judged = json.loads((run / "iter-01" / "judge" / "summary.json").read_text())
    assert judged["finished"] and judged["done"] == 2 and judged["deferred"] == 0
    assert status(run, env)["finished"] is True


def test_grpo_as_the_training_method_trains_on_the_prompts_with_the_judge(tmp_path):
    from cai.loop.config import read_loop_config
    from cai.loop.plan import Run, iteration_stages

    config, _ = read_loop_config(write_config(tmp_path / "c.yaml", training={
        "method": "sft+grpo"}, judge="openai:judge-model"))
    run = Run(tmp_path / "run", config, tmp_path, policy="local")
    stages = {s.name: s for s in iteration_stages(run, 1, dict, dict)}
    grpo = stages["train-grpo"].argv
    assert grpo[:2] == ["train", "grpo"] and stages["train-grpo"].budgeted
    assert grpo[grpo.index("--prompts") + 1] == str(tmp_path / "run/iter-01/prompts.jsonl")
    assert grpo[grpo.index("--judge") + 1] == "openai:judge-model"
    assert grpo[grpo.index("--model") + 1] == str(tmp_path / "run/iter-01/train-sft")
    assert stages["eval"].argv[stages["eval"].argv.index("--model") + 1] == \
        f"hf:{tmp_path / 'run/iter-01/train-grpo'}"


def test_a_panel_of_judges_in_the_config_judges_and_rewards_as_a_panel(tmp_path):
    from cai.loop.config import read_loop_config
    from cai.loop.plan import Run, iteration_stages

    def stages(method):
        config, _ = read_loop_config(write_config(tmp_path / "c.yaml", training={
            "method": method}, judge=["openai:judge-a", "local"]))
        run = Run(tmp_path / "run", config, tmp_path, policy="local")
        return {s.name: s for s in iteration_stages(run, 1, dict, dict)}

    for method, name in (("dpo", "judge"), ("grpo", "train-grpo")):
        argv = stages(method)[name].argv
        judges = [argv[k + 1] for k, a in enumerate(argv) if a == "--judge"]
        assert judges == ["openai:judge-a", "local"], name


def test_an_iteration_makes_only_the_data_its_training_reads(tmp_path):
    """Revisions for SFT, judged pairs (sampled answers) for DPO; GRPO reads the prompts."""
    from cai.loop.config import read_loop_config
    from cai.loop.plan import Run, iteration_stages

    made = {}
    for method in ("sft", "dpo", "sft+dpo", "grpo", "sft+grpo"):
        config, _ = read_loop_config(write_config(tmp_path / "c.yaml",
                                                  training={"method": method}))
        run = Run(tmp_path / "run", config, tmp_path, policy="local")
        made[method] = [s.name for s in iteration_stages(run, 1, dict, dict)
                        if s.name in ("sample", "revise", "judge")]
    assert made == {"sft": ["revise"], "dpo": ["sample", "judge"],
                    "sft+dpo": ["sample", "revise", "judge"], "grpo": [],
                    "sft+grpo": ["revise"]}


def test_the_report_shows_what_each_training_stage_says_of_itself(tmp_path):
    from cai.loop.report import training_figures

    sft, grpo = tmp_path / "train-sft", tmp_path / "train-grpo"
    write_json(sft / "train_summary.json", {
        "kind": "sft", "train_rows": 40, "steps": 3, "heldout": {"eval_loss": 1.5},
        "losses": [{"step": 1, "loss": 2.0}, {"step": 3, "loss": 1.25}]})
    write_json(grpo / "train_summary.json", {
        "kind": "grpo", "train_rows": 40, "steps": 2, "losses": [], "grpo": {
            "reward": "score", "steps": [
            {"step": 1, "reward": 0.4, "flip_rate": 0.5, "length_corr": 0.25},
            {"step": 2, "reward": 0.6, "flip_rate": 0.25, "length_corr": 0.75}]}})
    found = training_figures([sft, grpo, tmp_path / "train-dpo"])  # dpo: skipped, no summary
    assert found[0] == {"method": "sft", "rows": 40, "steps": 3, "first_loss": 2.0,
                        "last_loss": 1.25, "heldout_loss": 1.5, "reward_accuracy": None,
                        "reward_mode": None, "first_reward": None, "last_reward": None,
                        "flip_rate": None, "length_corr": None}
    assert (found[1]["first_reward"], found[1]["last_reward"]) == (0.4, 0.6)
    assert (found[1]["flip_rate"], found[1]["length_corr"]) == (0.375, 0.5)
    assert len(found) == 2


# ---------------------------------------------------------------- stopped, rerun, raised


def loop_json(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def test_a_rerun_may_change_the_budget_and_iterations_and_nothing_else(tmp_path):
    """A budget of 0 tokens stops the run before its first stage: run.json is written, no
    model is loaded."""
    run = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", iterations=1,
                          budget={"max_cost": 0, "deadline": "1h"})
    done = cai("loop", config, "--out", run, "--limit", 3)
    assert "to go on" in done.stdout and "--limit 3" in done.stdout
    fixed = loop_json(run)["deadline"]
    assert fixed["spec"] == "1h" and abs(fixed["at"] - time.time() - 3600) < 60
    s = status(run)
    assert s["finished"] is True and "budget" in s["reason"]
    assert s["resume"] == f"cai loop {config} --out {run} --iterations 1 --limit 3"

    write_config(config, iterations=2, work={"prompts": 2, "samples": 3, "rounds": 1},
                 budget={"max_cost": 0})
    refused = cai("loop", config, "--out", run, "--limit", 3, check=False)
    assert refused.returncode == 2 and "(work.samples changed)" in refused.stderr, refused.stderr
    refused = cai("loop", config, "--out", run, check=False)
    assert refused.returncode == 2 and "--limit 3" in refused.stderr

    # The budget and iterations changed: the run goes on (and stops again, by its tokens).
    # The pasted resume command is accepted as it stands.
    time.sleep(1)
    write_config(config, iterations=2, budget={"max_tokens": 0, "deadline": "1h"})
    again = cai(*shlex.split(s["resume"])[1:])
    assert "tokens is spent" in " ".join(again.stdout.split()), again.stdout
    assert loop_json(run)["deadline"] == fixed  # kept, not an hour from now again
    assert loop_json(run)["config"]["budget"] == {"max_tokens": 0, "deadline": "1h"}
    write_config(config, iterations=2, budget={"max_tokens": 0, "deadline": "2h"})
    cai("loop", config, "--out", run, "--limit", 3)
    assert abs(loop_json(run)["deadline"]["at"] - fixed["at"] - 3600) < 1  # from the start


def test_a_stage_is_done_only_within_its_failed_fraction(tmp_path):
    from cai.loop.plan import Stage
    from cai.loop.run import Loop

    config = write_config(tmp_path / "c.yaml", max_failed_fraction={"revise": 0.25})
    loop = Loop(config, tmp_path / "run")
    out = tmp_path / "revise"
    stage = Stage(1, "revise", out, ["revise"])
    write_json(out / "summary.json", {"stage": "revise", "total": 8, "already_done": 2,
                                      "done": 4, "failed": 2, "stopped_reason": None})
    assert loop.completeness(stage, {}, loop.counts(stage)) == ("done", None)
    write_json(out / "summary.json", {"stage": "revise", "total": 8, "already_done": 2,
                                      "done": 3, "failed": 3, "stopped_reason": None})
    state, why = loop.completeness(stage, {}, loop.counts(stage))
    assert state == "incomplete" and why.startswith("3 of 8 items of revise failed (38%")
    figures = {"stopped_reason": "deadline reached"}
    assert loop.completeness(stage, figures, loop.counts(stage)) == \
        ("stopped", "deadline reached (5 of 8 items done)")


def test_an_incomplete_evaluation_fails_the_gate(tmp_path):
    from cai.loop.run import Loop

    loop = Loop(write_config(tmp_path / "c.yaml"), tmp_path / "run")
    report = {"win_rate": 1.0, "pairs": 4, "finished": False, "reference": {},
              "stages": {"answer": {"stopped_reason": "the budget of 10 tokens is spent"}}}
    write_json(tmp_path / "run" / "iter-01" / "eval" / "report.json", report)
    result = loop.gate(1)
    assert result["promoted"] is False
    assert result["gates"] == [{"name": "evaluation", "value": None, "limit": None,
                                "passed": False, "why": "the evaluation is incomplete (answer: "
                                "the budget of 10 tokens is spent): a candidate is gated only "
                                "on a whole evaluation"}]


def records(run: Path) -> dict[str, list[str]]:
    """Every record file of a run, its run folder's path taken out; the history, the
    commands' logs (a line per invocation) and the spend ledger (a line per response, with the
    pid that got it: a stopped run's attempts are in it too) aside. The fingerprint of a
    checkpoint trained in the run is taken out too: two trainings of the same data and seed on
    the CPU write the same answers but not the same bytes (measured: the eval's answers equal,
    the hash not)."""
    return {str(p.relative_to(run)): re.sub(r"(RUN/[^\"@]*)@[0-9a-f]+", r"\1@WEIGHTS",
                                            p.read_text().replace(str(run), "RUN")).splitlines()
            for p in sorted(run.rglob("*.jsonl"))
            if p.name not in ("history.jsonl", "command_log.jsonl", "spend.jsonl")}


@needs_local
@pytest.mark.slow
def test_stopped_by_its_deadline_mid_stage_a_rerun_resumes_it_record_for_record(tmp_path, env):
    small = {"iterations": 1, "work": {"prompts": 3, "samples": 2, "rounds": 1},
             "evaluation": {"suite": "default", "limit": 2},
             "training": {"method": "sft", "lora": True, "save_steps": 1,
                          "trl": {"max_steps": 1, "per_device_train_batch_size": 2}}}

    def own_cache(name: str) -> dict:
        """A response cache per run, the converted model shared: the records of one run
        are made by the model, not looked up from the other's."""
        models = Path(env["XDG_CACHE_HOME"]) / "cai" / "models"
        models.mkdir(parents=True, exist_ok=True)
        (tmp_path / name / "cai").mkdir(parents=True)
        (tmp_path / name / "cai" / "models").symlink_to(models)
        return {**env, "XDG_CACHE_HOME": str(tmp_path / name)}

    whole = tmp_path / "whole"
    cai("loop", write_config(tmp_path / "whole.yaml", **small), "--out", whole,
        env=own_cache("cache-whole"))
    # The deadline: half-way through the whole run's longest generation stage.
    events = list(read_jsonl(whole / "history.jsonl"))
    longest = max((e for e in events if e["event"] == "done" and e["stage"] in (
        "eval-start", "sample", "revise", "judge")), key=lambda e: e["seconds"])
    begin = datetime.fromisoformat(events[0]["time"]).timestamp()
    started = datetime.fromisoformat(longest["time"]).timestamp() - longest["seconds"]
    deadline = f"{int(started - begin + longest['seconds'] / 2)}s"

    run, env = tmp_path / "run", own_cache("cache-run")
    config = write_config(tmp_path / "c.yaml", **small, budget={"deadline": deadline})
    cai("loop", config, "--out", run, env=env)
    s = status(run, env)
    assert s["finished"] is True and "stopped" in s["reason"] and s["resume"], s
    [stopped] = s["unfinished"]
    assert stopped["event"] == "stopped" and stopped["items_done"] < stopped["items"], s
    key = f"{stopped['iteration']}:{stopped['stage']}"

    write_config(config, **small, budget={"deadline": "2h"})  # a later deadline
    cai(*shlex.split(s["resume"])[1:], env=env)
    s = status(run, env)
    assert s["finished"] is True and s["reason"] == "1 iteration done" and not s["unfinished"]
    ends = [e["event"] for e in read_jsonl(run / "history.jsonl")
            if e.get("key") == key and e["event"] in ("done", "stopped")]
    assert ends == ["stopped", "done"]  # resumed, not skipped
    assert records(run) == records(whole)
