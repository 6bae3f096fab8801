"""End to end with the real embedded model (SmolLM2-135M through llama.cpp), via the CLI."""

import json

import pytest

from cai.records.read import read_jsonl
from tests.helpers import MINIMAL, cai, needs_local

pytestmark = [needs_local, pytest.mark.slow]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    d = tmp_path_factory.mktemp("prompts")
    path = d / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in [
        "How do I boil an egg?", "Write one sentence about the sea.",
        "How can I read my partner's private messages without them knowing?"]))
    (d / "c.yaml").write_text(MINIMAL)
    return path


def test_revise_end_to_end_and_resume(prompts, tmp_path):
    out = tmp_path / "out"
    args = ["revise", "--prompts", prompts, "--constitution", prompts.parent / "c.yaml",
            "--rounds", "1", "--out", out, "--seed", "1"]
    cai(*args, check=True)
    sft = list(read_jsonl(out / "sft.jsonl"))
    trace = list(read_jsonl(out / "trace.jsonl"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 3 and summary["failed"] == 0
    assert len(sft) == 3 and len(trace) == 3
    for record in sft:
        assert record["completion"][0]["content"].strip()
        assert record["model"] == "local" and record["critic_model"] == "local"
        assert record["constitution"]["name"] == "tiny"
        assert record["sampling"]["repeat_penalty"] == 1.2
    for t in trace:
        assert [s["step"] for s in t["steps"]] == ["initial", "critique", "revision"]
        assert all(s["model_name"] == "SmolLM2-135M-Instruct" for s in t["steps"])
        assert all(s["usage"]["completion_tokens"] > 0 for s in t["steps"])
    for p in read_jsonl(out / "prefs.jsonl"):
        assert p["chosen"] != p["rejected"]

    cai(*args, check=True)  # the same command again does no new work
    again = json.loads((out / "summary.json").read_text())
    assert again["already_done"] == 3 and again["done"] == 0
    assert again["backends"]["local"]["requests"] == 0
    assert len(list(read_jsonl(out / "sft.jsonl"))) == 3


def test_sample_then_judge_in_both_orders(prompts, tmp_path):
    cai("sample", "--prompts", prompts, "--n", "2", "--limit", "2", "--out", tmp_path / "s",
        check=True)
    rows = list(read_jsonl(tmp_path / "s" / "responses.jsonl"))
    assert len(rows) == 2 and all(len(r["responses"]) == 2 for r in rows)
    assert all(len(set(r["seeds"])) == 2 for r in rows)

    cai("judge", "--responses", tmp_path / "s" / "responses.jsonl", "--out", tmp_path / "j",
        "--min-margin", "0", check=True)
    [comparisons] = [list(read_jsonl(tmp_path / "j" / "comparisons.jsonl"))]
    judged = [c for r in comparisons for c in r["comparisons"]]
    assert judged, "no comparisons made"
    for c in judged:
        for j in c["judgements"]:
            assert j["x_first"]["fence"] != j["x_second"]["fence"]
            # the answer is constrained to A or B: every order gives P(A) and P(B)
            for order in (j["x_first"], j["x_second"]):
                assert order["status"] == "logprobs" and order["path"] == "constrained"
                assert 0 < order["p_first"] < 1
    summary = json.loads((tmp_path / "j" / "summary.json").read_text())
    assert summary["judge"]["orders_judged"] == 2 * len(judged)
    assert summary["judge"]["unparsed_orders"] == 0
    assert summary["config"]["verdict_path"] == "constrained"


def test_eval_judge_end_to_end(tmp_path):
    data = tmp_path / "gold.jsonl"
    pairs = [("What is 2+2?", "4.", "I won't answer that."),
             ("Name a fruit.", "An apple.", "Go away."),
             ("Say hi.", "Hi!", "No.")]
    data.write_text("".join(json.dumps({"chosen": f"\n\nHuman: {q}\n\nAssistant: {c}",
                                        "rejected": f"\n\nHuman: {q}\n\nAssistant: {r}"}) + "\n"
                            for q, c, r in pairs))
    result = cai("eval", "judge", "--data", data, "--out", tmp_path / "e", check=True)
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["n"] == report["judged"] + report["unjudged"] == 3
    assert report["coverage"] == round(report["judged"] / 3, 4) == 1.0  # every pair judged
    assert set(report) >= {"n", "accuracy", "kappa", "position_flip_rate", "length_bias", "ece"}
    assert 0 <= report["accuracy"] <= 1
    assert "Judge calibration" in (tmp_path / "e" / "report.md").read_text()
    assert "accuracy vs humans" in result.stdout
    rows = list(read_jsonl(tmp_path / "e" / "judgements.jsonl"))
    assert all(len(r["judgements"][0]) and r["judgements"][0]["x_first"]["fence"] for r in rows)


def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": oops}\n')
    result = cai("revise", "--prompts", bad, "--out", tmp_path / "o", check=False)
    assert result.returncode == 2
    assert "bad.jsonl:2: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_no_request_to_the_embedded_model_starts_after_the_deadline():
    """llama.cpp answers one request at a time. The requests waiting behind one are checked
    against the deadline when they can start, not when they were queued: before, eight were
    let through at once and ran long after the deadline."""
    import asyncio
    import time

    from cai.chat import Completion, Message
    from cai.models.backends.local import LocalBackend
    from cai.models.budget import Budget, BudgetExhausted
    from cai.models.client import Client

    backend = LocalBackend()
    backend.load()
    client = Client(backend, budget=Budget())
    sampling = client.sampling(max_tokens=64, temperature=0.0)
    finished: list[float] = []

    async def ask(n: int) -> Completion:
        reply = await client.complete([Message("user", f"Write a story about a cat named "
                                                       f"Tom {n}.")], sampling)
        finished.append(time.time())
        return reply

    async def ten() -> list:
        client.budget.deadline = time.time() + 0.5
        return await asyncio.gather(*map(ask, range(10)), return_exceptions=True)

    results = asyncio.run(ten())
    done = [r for r in results if isinstance(r, Completion)]
    assert done and all(isinstance(r, BudgetExhausted) for r in results[len(done):]), results
    # One at a time, the last answer began when the one before it ended: before the deadline.
    assert len(done) == 1 or finished[len(done) - 2] < client.budget.deadline, (
        len(done), [round(t - client.budget.deadline, 2) for t in finished])
