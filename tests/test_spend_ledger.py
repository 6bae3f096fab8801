"""The run's spend ledger: every model response a child of `cai loop` gets is one line in it,
as it comes, from every process; what the stand-in server counted is what the ledger says."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cai.models.budget import LEDGER, LEDGER_STAGE, read_ledger, record_spend
from cai.records.read import read_jsonl
from tests.helpers import needs_local, needs_train
from tests.stubs.stub_server import StubServer, completion_body, default_reply


def served_tokens(requests: list[dict], reply=default_reply) -> int:
    """What the stand-in charged for these requests, answered by `reply`: its own usage
    figures, worked again."""
    return sum(completion_body(r, reply(r))["usage"]["total_tokens"] for r in requests)


def ledger_tokens(spent: dict) -> int:
    return int(spent["tokens_in"] + spent["tokens_out"])


def test_lines_from_many_processes_add_up_per_stage(tmp_path):
    ledger = tmp_path / "spend.jsonl"
    script = ("from cai.models.budget import record_spend\n"
              "for _ in range(50): record_spend('openai:m', 10, 5, 0.001)\n")
    env = {**os.environ, LEDGER: str(ledger)}
    procs = [subprocess.Popen([sys.executable, "-c", script],
                              env={**env, LEDGER_STAGE: f"1:stage-{k % 2}"}) for k in range(4)]
    assert all(p.wait(60) == 0 for p in procs)
    with open(ledger, "a") as f:
        f.write('{"stage": "1:stage-0", "requests": 1, "tok')  # a line a kill cut short
    spent = read_ledger(ledger)
    assert spent["total"] == {"requests": 200, "tokens_in": 2000, "tokens_out": 1000,
                              "cost_usd": 0.2}
    assert spent["1:stage-0"]["requests"] == spent["1:stage-1"]["requests"] == 100
    record_spend("openai:m", 1, 1, 0.0)  # no ledger named: nothing written, nothing raised
    assert read_ledger(tmp_path / "none.jsonl")["total"]["requests"] == 0


def test_a_stage_killed_and_rerun_is_counted_whole_by_the_server(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Question number {k}?"}) + "\n"
                               for k in range(12)))
    ledger = tmp_path / "spend.jsonl"
    env = {**os.environ, "OPENAI_API_KEY": "stand-in", LEDGER: str(ledger),
           LEDGER_STAGE: "1:sample"}  # and the test's own cache, from conftest
    with StubServer(latency=0.2) as server:
        argv = [sys.executable, "-m", "cai", "sample", "--prompts", str(prompts), "--model",
                "openai:stand-in", "--base-url", server.url, "--n", "2", "--concurrency", "2",
                "--out", str(tmp_path / "sample")]
        first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        while server.completions < 6:
            assert first.poll() is None
        first.kill()  # mid-stage, requests in flight
        first.wait()
        killed_at = server.completions
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        requests = list(server.requests)
    spent = read_ledger(ledger)
    # What the killed attempt got before it died is in the ledger too, not only the rerun's.
    assert spent["1:sample"]["requests"] >= killed_at - 2
    # Every request the server answered is a line, but those in flight at the kill (2 at most).
    assert 0 <= len(requests) - spent["total"]["requests"] <= 2
    assert 0 <= served_tokens(requests) - ledger_tokens(spent["total"]) <= \
        2 * max(completion_body(r, default_reply(r))["usage"]["total_tokens"] for r in requests)
    summary = json.loads((Path(tmp_path) / "sample" / "summary.json").read_text())
    assert summary["requests"] < spent["total"]["requests"]  # the summary: the last process


@needs_local
@needs_train
@pytest.mark.slow
def test_grpo_reaching_its_budget_stops_with_a_checkpoint_and_resumes(tmp_path):
    """The judge's budget (2 requests a step) runs out within step 2 of 4: the reward raises no
    more, the step learns nothing, training stops as it ends with a checkpoint, exit 0; the
    same command with more budget goes on from it."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in (
        "Name a colour.", "Say hello politely.", "What is two plus two?", "Name a fruit.")))
    config = tmp_path / "t.yaml"
    config.write_text("trl:\n  max_steps: 4\n  num_generations: 2\n  save_strategy: steps\n"
                      "  save_steps: 100\n  per_device_train_batch_size: 2\n"
                      "  max_completion_length: 8\n")
    out = tmp_path / "grpo"
    # The test's own cache (conftest), in which the converted model is the shared one.
    env = {**os.environ, "OPENAI_API_KEY": "stand-in", "OMP_NUM_THREADS": "1"}
    with StubServer() as server:
        argv = [sys.executable, "-m", "cai", "train", "grpo", "--prompts", str(prompts),
                "--model", "local", "--judge", "openai:stand-in", "--base-url", server.url,
                "--out", str(out), "--lora", "--config", str(config), "--eval-fraction", "0"]
        first = subprocess.run([*argv, "--max-requests", "3"], env=env, capture_output=True,
                               text=True, timeout=900)
        assert first.returncode == 0, first.stderr[-3000:]
        assert "stopped: max-requests 3 reached" in " ".join(first.stderr.split())
        summary = json.loads((out / "train_summary.json").read_text())
        assert summary["stopped_reason"] == "max-requests 3 reached"
        assert summary["steps"] == 2 and [p.name for p in out.glob("checkpoint-*")] == \
            ["checkpoint-2"]
        assert server.completions == 3
        again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["stopped_reason"] is None and summary["steps"] == 4
    assert summary["resumed_from"] == "checkpoint-2" and not list(out.glob("checkpoint-*"))


def test_the_loop_reads_a_trainers_stop_and_its_spend_from_the_ledger(tmp_path):
    """GRPO's summary (no `stage` key) is read for its stop; spend comes from the ledger,
    every attempt of the stage, not from the summaries."""
    import yaml

    from cai.loop.run import Loop
    from cai.records.rewrite import write_json
    from tests.helpers import ROOT

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "policy": "local", "critic": "local", "judge": "local", "evaluator": "local",
        "prompts": {"file": str(ROOT / "examples" / "prompts.jsonl")}, "iterations": 1,
        "training": {"method": "grpo"}, "budget": {"max_tokens": 1000}}))
    loop = Loop(config, tmp_path / "run")
    loop.run.folder.mkdir()
    stage = next(s for s in loop.stages() if s.name == "train-grpo")
    write_json(stage.out / "train_summary.json", {"kind": "grpo", "steps": 2,
                                                  "stopped_reason": "max-tokens 9 reached"})
    with open(loop.run.folder / "spend.jsonl", "w") as f:
        for key, tokens in ((stage.key, 300), (stage.key, 200), ("1:judge", 100)):
            f.write(json.dumps({"stage": key, "requests": 1, "tokens_in": tokens,
                                "tokens_out": 0, "cost_usd": 0.0}) + "\n")
    figures = loop.figures(stage)
    assert figures["stopped_reason"] == "max-tokens 9 reached"
    assert (figures["tokens"], figures["requests"]) == (500, 2)
    assert loop.history.spent()["tokens"] == 600
    assert loop.budget_options()[-2:] == ["--max-tokens", "400"]


# ---------------------------------------------------------------- a whole loop, budget-stopped

IN_FLIGHT = 8  # the commands' default --concurrency: requests a stop can find on their way


def generating(request: dict) -> dict:
    """The stand-in's replies: numbered prompts, distinct for every request (its seed), to a
    request of `cai data prompts`; the default reply to the others."""
    last = request["messages"][-1]["content"]
    if not last.startswith("You help test an AI assistant."):
        return default_reply(request)
    count = int(re.search(r"Write (\d+) different", last).group(1))
    return {"content": "\n".join(f"{k}. Tell me one fact about item {request['seed']} {k}, "
                                 "please, in one sentence." for k in range(1, count + 1))}


def largest(requests: list[dict]) -> int:
    """The most tokens the stand-in served in one of these requests."""
    return max(served_tokens([r], generating) for r in requests)


def spent_on(ledger: Path, prefix: str) -> dict[str, int]:
    """The ledger's lines for the models whose spec starts with `prefix`, added up."""
    mine = [x for x in read_jsonl(ledger) if x["model"].startswith(prefix)]
    return {"requests": sum(x["requests"] for x in mine),
            "tokens": sum(x["tokens_in"] + x["tokens_out"] for x in mine)}


@pytest.fixture(scope="module")
def budgeted_run(tmp_path_factory, local_model):
    """One loop run with GRPO as its training, every model but the policy a stand-in on
    127.0.0.1, run four times: stopped by `max_tokens: 1` in its first stage (the
    prompts the stand-in writes, 10 requests, 8 at a time); raised, and interrupted as GRPO
    starts, to learn what the stages before it spent; with a budget of 1 token more than that,
    which GRPO's judge reaches; raised again, to the end. What each phase left is kept for the
    tests below; the run is shared, as it is the slow part."""
    from tests.helpers import cache_linked_to, loop_cai, status, write_config

    tmp = tmp_path_factory.mktemp("budgeted")
    cache = cache_linked_to(tmp / "cache", local_model.parent)  # one cache for every phase
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "OPENAI_API_KEY": "stand-in",
           "OMP_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1"}
    run, history = tmp / "run", tmp / "run" / "history.jsonl"
    phases: dict[str, dict] = {}
    with StubServer(latency=0.2, handler=generating) as server:
        def config(max_tokens: int) -> Path:
            return write_config(
                tmp / "c.yaml", iterations=1, critic="openai:stand-in", judge="openai:stand-in",
                evaluator="openai:evaluator", base_urls=[server.url],
                prompts={"generate": 40, "generator": "openai:stand-in"},
                work={"prompts": 1, "samples": 2, "rounds": 1},
                evaluation={"suite": "default", "limit": 1},
                training={"method": "grpo", "lora": True, "save_steps": 100, "trl": {
                    "max_steps": 3, "num_generations": 2, "per_device_train_batch_size": 2,
                    "max_completion_length": 8}},
                budget={"max_tokens": max_tokens})

        def phase(name: str, done: subprocess.CompletedProcess | None = None) -> None:
            phases[name] = {"done": done, "status": status(run, env),
                            "served": list(server.requests),
                            "ledger": read_ledger(run / "spend.jsonl")}

        phase("tokens", loop_cai("loop", config(1), "--out", run, env=env))
        raised = phases["tokens"]["status"]["resume"]
        config(10**9)
        loop = subprocess.Popen([sys.executable, "-m", "cai", *shlex.split(raised)[1:]],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not any(e["event"] == "start" and e["key"] == "1:train-grpo"
                      for e in read_jsonl(history)):
            assert loop.poll() is None, "the loop ended before GRPO began"
            time.sleep(0.1)
        loop.send_signal(signal.SIGTERM)
        loop.wait(120)
        phase("interrupted")
        before = phases["interrupted"]["status"]["spent"]["tokens"]
        phase("grpo", loop_cai("loop", config(int(before) + 1), "--out", run, env=env))
        phases["grpo"]["checkpoints"] = sorted(
            p.name for p in (run / "iter-01" / "train-grpo").glob("checkpoint-*")
            if (p / "trainer_state.json").is_file())
        phases["grpo"]["summary"] = json.loads(
            (run / "iter-01" / "train-grpo" / "train_summary.json").read_text())
        phase("end", loop_cai("loop", config(10**9), "--out", run, env=env))
    return run, phases


def asked_for_prompts(requests: list[dict]) -> list[dict]:
    return [r for r in requests
            if r["messages"][-1]["content"].startswith("You help test an AI assistant.")]


@needs_local
@needs_train
@pytest.mark.slow
def test_a_run_stopped_by_max_tokens_goes_on_when_the_budget_is_raised(budgeted_run):
    """Stopped in its first stage with requests in flight; the budget raised in the config,
    the rerun is taken as the same run, resumes that stage where it stopped, and goes on; the
    ledger holds every response the stand-in served, in every phase, and no other."""
    run, phases = budgeted_run
    first = phases["tokens"]
    assert "to go on" in first["done"].stdout, first["done"].stdout
    s = first["status"]
    assert s["finished"] is True and s["reason"].startswith("generate stopped: max-tokens 1 "
                                                            "reached"), s
    [stopped] = s["unfinished"]
    assert (stopped["stage"], stopped["event"]) == ("generate", "stopped")
    assert 0 < stopped["items_done"] < stopped["items"] == 10, stopped
    # Passed by at most the responses on their way when the first one spent the budget.
    served = first["served"]
    assert 1 <= s["spent"]["tokens"] <= IN_FLIGHT * largest(served)
    assert s["spent"]["requests"] == len(served) <= IN_FLIGHT
    assert ledger_tokens(first["ledger"]["total"]) == served_tokens(served, generating)

    # Raised: generate resumed (stopped, then done), each of its requests sent once.
    events = list(read_jsonl(run / "history.jsonl"))
    assert [e["event"] for e in events if e.get("key") == "0:generate" and e["event"] in
            ("done", "stopped")] == ["stopped", "done"]
    asked = asked_for_prompts(phases["end"]["served"])
    assert len(asked) == 10 and len({json.dumps(r, sort_keys=True) for r in asked}) == 10
    # (SIGTERM stopped it as GRPO started: it was once dropped when it came as a stage forked.)
    assert phases["interrupted"]["status"]["state"] == "interrupted"
    end = phases["end"]["status"]
    assert end["finished"] is True and end["reason"] == "1 iteration done" and \
        not end["unfinished"], end
    assert not any(e["event"] == "failed" for e in events)

    # What the stand-in served is what the ledger says, for the whole run: but for what was
    # on its way when the loop was interrupted (nothing, as GRPO had not yet called its judge).
    served = phases["end"]["served"]
    by_stand_in = spent_on(run / "spend.jsonl", "openai:")
    assert 0 <= len(served) - by_stand_in["requests"] <= IN_FLIGHT
    assert 0 <= served_tokens(served, generating) - by_stand_in["tokens"] <= \
        IN_FLIGHT * largest(served)
    # Per stage too: `cai data prompts` calls only the stand-in.
    assert end["spent_by_stage"]["0:generate"]["tokens"] == served_tokens(asked, generating)
    # `cai loop status` shows the ledger: the stand-in's and the local model's, added up.
    everyone = spent_on(run / "spend.jsonl", "")
    assert end["spent"]["tokens"] == everyone["tokens"] > by_stand_in["tokens"]
    assert end["spent"]["tokens"] == sum(x["tokens"] for x in end["spent_by_stage"].values())


@needs_local
@needs_train
@pytest.mark.slow
def test_grpo_in_the_loop_stopped_by_its_budget_leaves_a_checkpoint_and_resumes(budgeted_run):
    """GRPO's judge reaches the run's budget (1 token more than the stages before it spent):
    the stage is `stopped`, not done or failed, with a checkpoint; the loop exits 0 saying so;
    raised, the rerun goes on from the checkpoint to the end."""
    run, phases = budgeted_run
    grpo = phases["grpo"]
    assert grpo["done"].returncode == 0
    said = " ".join(grpo["done"].stdout.split())
    assert "train-grpo stopped: max-tokens 1 reached" in said and "to go on" in said, said
    summary = grpo["summary"]
    assert summary["stopped_reason"] == "max-tokens 1 reached"
    assert 1 <= summary["steps"] < 3 and grpo["checkpoints"] == [f"checkpoint-{summary['steps']}"]
    s, why = grpo["status"], f"max-tokens 1 reached (at step {summary['steps']} of 3)"
    assert s["finished"] is True and s["reason"] == f"train-grpo stopped: {why}", s
    assert [(u["stage"], u["event"], u["reason"]) for u in s["unfinished"]] == \
        [("train-grpo", "stopped", why)]
    # Its judge's calls are in the ledger, under its stage: all the stand-in served then.
    since = phases["interrupted"]["served"]
    judged = grpo["served"][len(since):]
    earlier = phases["interrupted"]["ledger"].get("1:train-grpo", {"tokens_in": 0,
                                                                    "tokens_out": 0})
    assert judged and ledger_tokens(grpo["ledger"]["1:train-grpo"]) == \
        served_tokens(judged, generating) + ledger_tokens(earlier)
    before = phases["interrupted"]["status"]["spent"]["tokens"]
    assert before < s["spent"]["tokens"] <= before + 1 + IN_FLIGHT * largest(judged)

    events = [e["event"] for e in read_jsonl(run / "history.jsonl")
              if e.get("key") == "1:train-grpo" and e["event"] in ("done", "stopped", "failed")]
    assert events == ["stopped", "done"]
    final = json.loads((run / "iter-01" / "train-grpo" / "train_summary.json").read_text())
    assert final["stopped_reason"] is None and final["steps"] == 3
    assert final["resumed_from"] == grpo["checkpoints"][0]
    assert phases["end"]["status"]["reason"] == "1 iteration done"
