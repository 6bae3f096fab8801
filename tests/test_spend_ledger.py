"""The run's spend ledger: every model response a child of `cai loop` gets is one line in it,
as it comes, from every process; what the stand-in server counted is what the ledger says."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cai.models.budget import LEDGER, LEDGER_STAGE, read_ledger, record_spend
from tests.helpers import needs_local, needs_train
from tests.stubs.stub_server import StubServer, completion_body, default_reply


def served_tokens(requests: list[dict]) -> int:
    """What the stand-in charged for these requests: its own usage figures, worked again."""
    return sum(completion_body(r, default_reply(r))["usage"]["total_tokens"] for r in requests)


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
