"""Reliability at scale, over real HTTP against tests.stubs.stub_server, a local stand-in for
OpenAI-compatible and Anthropic endpoints that injects faults at set rates. No code of ours
is mocked; the provider services themselves cannot be reached from here."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cai.inputs import read_prompts
from cai.models.backends.anthropic import AnthropicBackend
from cai.models.backends.openai import OpenAIBackend
from cai.models.budget import Budget
from cai.models.cache import ResponseCache
from cai.models.client import Client, Limits
from cai.records.read import read_jsonl
from cai.stages.sample import sample
from cai.templates import Templates
from tests.stubs.stub_server import StubServer, fill_reply

FAST_RETRY = Limits(concurrency=64, attempts=10, backoff=0.01, max_wait=0.2)


def prompts_file(tmp_path, n):
    path = tmp_path / "p.txt"
    path.write_text("".join(f"Question number {i}?\n" for i in range(n)))
    return path


def run_sample(client, prompts, out, n=1, concurrency=64):
    async def go():
        try:
            return await sample(read_prompts(prompts), client, Templates(), out, n=n,
                                concurrency=concurrency, progress=False)
        finally:
            await client.aclose()

    return asyncio.run(go())


def cai(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "cai", *map(str, args)],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_two_thousand_items_at_a_20_percent_fault_rate(tmp_path):
    # The client's timeout leaves room for a loaded 2-core machine; "timeout" faults hang past it.
    with StubServer(fault_rate=0.2, hang=4.0, retry_after=0.01, seed=1) as server:
        backend = OpenAIBackend("m", base_urls=[server.url], timeout=2.0)
        result = run_sample(Client(backend, FAST_RETRY), prompts_file(tmp_path, 2000),
                            tmp_path / "o")
    records = list(read_jsonl(tmp_path / "o" / "responses.jsonl"))
    assert result.summary["done"] == 2000 and result.summary["failed"] == 0
    assert len(records) == 2000 and len({r["id"] for r in records}) == 2000
    assert set(server.faults_sent) == {"429", "500", "503", "timeout", "reset", "malformed",
                                       "empty", "truncated"}
    retries = result.summary["backends"]["openai:m"]["retries"]
    # Every fault cost a retry; a loaded machine can also time out a request that was fine.
    assert sum(retries.values()) >= sum(server.faults_sent.values())
    assert {"429", "500", "503", "timeout", "malformed", "empty"} <= set(retries)


def test_anthropic_backend_retries_and_answers(tmp_path):
    with StubServer(fault_rate=0.3, faults=("429", "500", "empty"), retry_after=0.01,
                    seed=2) as server:
        backend = AnthropicBackend("claude-x", base_urls=[server.url.removesuffix("/v1")],
                                   api_key="k")
        result = run_sample(Client(backend, FAST_RETRY), prompts_file(tmp_path, 50),
                            tmp_path / "o")
    assert result.summary["done"] == 50
    request = server.requests[0]
    assert request["model"] == "claude-x" and "system" in request and request["max_tokens"]
    assert all(m["role"] != "system" for m in request["messages"])


def test_a_400_fails_the_item_with_its_reason_and_the_run_goes_on(tmp_path):
    def picky(request):
        if "number 3?" in request["messages"][-1]["content"]:
            raise ValueError("this prompt is not allowed")
        return {"content": "fine"}

    with StubServer(handler=picky) as server:
        result = run_sample(Client(OpenAIBackend("m", base_urls=[server.url]), FAST_RETRY),
                            prompts_file(tmp_path, 10), tmp_path / "o")
    assert result.summary["done"] == 9 and result.summary["failed"] == 1
    [failed] = list(read_jsonl(tmp_path / "o" / "failed.jsonl"))
    assert "HTTP 400" in failed["error"] and "not allowed" in failed["error"]
    assert server.completions == 10  # a 400 is not retried


def test_sigkill_and_resume_loses_and_repeats_nothing(tmp_path):
    prompts = prompts_file(tmp_path, 120)
    out = tmp_path / "o"
    args = ["sample", "--prompts", prompts, "--model", "openai:m", "--out", out, "--n", "1",
            "--concurrency", "4", "--cache", tmp_path / "cache.sqlite"]
    with StubServer(latency=0.05) as server:
        proc = cai(*args, "--base-url", server.url, env={"OPENAI_API_KEY": "k"})
        path = out / "responses.jsonl"
        deadline = time.time() + 60
        while not (path.exists() and path.read_text().count("\n") >= 40):
            assert time.time() < deadline and proc.poll() is None, "the run did not start"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_before = path.read_text().count("\n")
        sent_before = server.completions
        assert done_before < 120

        proc = cai(*args, "--base-url", server.url, env={"OPENAI_API_KEY": "k"})
        assert proc.wait(60) == 0, proc.stderr.read()
    records = list(read_jsonl(path))
    assert sorted(r["id"] for r in records) == sorted(i.id for i in read_prompts(prompts))
    assert path.read_text().endswith("\n")
    # Every prompt was asked once, except those in flight at the kill (at most --concurrency).
    assert server.completions - sent_before <= 120 - done_before
    assert 120 <= server.completions <= 120 + 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["already_done"] == done_before and summary["finished"]


def test_budget_stops_at_the_limit_and_resumes_with_more(tmp_path):
    prompts = prompts_file(tmp_path, 60)
    with StubServer(latency=0.01) as server:
        def client(max_requests):
            return Client(OpenAIBackend("m", base_urls=[server.url]), FAST_RETRY,
                          budget=Budget(max_requests=max_requests))

        first = run_sample(client(25), prompts, tmp_path / "o", concurrency=8)
        assert server.completions == 25  # never past the limit: requests are counted first
        assert first.summary["stopped_reason"] == "max-requests 25 reached"
        assert first.summary["done"] == 25 and not first.summary["finished"]
        assert first.summary["abandoned"] == 35

        second = run_sample(client(100), prompts, tmp_path / "o", concurrency=8)
    assert second.summary["done"] == 35 and second.summary["finished"]
    assert len(list(read_jsonl(tmp_path / "o" / "responses.jsonl"))) == 60
    assert server.completions == 60


def test_token_budget_overshoots_by_in_flight_requests_at_most(tmp_path):
    with StubServer(handler=fill_reply) as server:
        budget = Budget(max_tokens=2000)
        client = Client(OpenAIBackend("m", base_urls=[server.url]), FAST_RETRY, budget=budget)
        result = run_sample(client, prompts_file(tmp_path, 100), tmp_path / "o", concurrency=4)
    per_request = budget.spent_tokens / server.completions
    assert result.summary["stopped_reason"] == "max-tokens 2000 reached"
    assert 2000 <= budget.spent_tokens <= 2000 + 4 * per_request


def test_requests_per_minute_are_kept(tmp_path):
    with StubServer() as server:
        client = Client(OpenAIBackend("m", base_urls=[server.url]),
                        Limits(concurrency=16, rpm=1200))  # 20 a second
        run_sample(client, prompts_file(tmp_path, 45), tmp_path / "o", concurrency=16)
    t = server.times
    assert len(t) == 45
    # Paced at 20 a second: measured where they arrive, so allow the network a little jitter.
    assert (len(t) - 1) / (t[-1] - t[0]) <= 20 * 1.05
    assert all(t[i + 21] - t[i] >= 1.0 for i in range(len(t) - 21))


def test_dry_run_estimate_is_within_20_percent(tmp_path):
    prompts = prompts_file(tmp_path, 20)
    with StubServer(handler=fill_reply) as server:
        common = ["--prompts", prompts, "--model", "openai:gpt-4o-mini", "--base-url",
                  server.url, "--n", "2", "--no-cache"]
        dry = cai("sample", *common, "--out", tmp_path / "o", "--dry-run")
        stdout, stderr = dry.communicate(timeout=60)
        assert dry.returncode == 0, stderr
        estimate = json.loads(stdout)
        assert server.completions == 0 and not (tmp_path / "o").exists()
        real = cai("sample", *common, "--out", tmp_path / "o", env={"OPENAI_API_KEY": "k"})
        assert real.wait(60) == 0
    used = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert estimate["requests"] == used["requests"] == 40
    for key in ("tokens_in", "tokens_out", "cost_usd"):
        assert abs(estimate[key] - used[key]) <= 0.2 * used[key], key


def test_cache_makes_identical_work_free(tmp_path):
    prompts = prompts_file(tmp_path, 10)
    with StubServer() as server:
        def client():
            return Client(OpenAIBackend("m", base_urls=[server.url]), FAST_RETRY,
                          cache=ResponseCache(tmp_path / "c.sqlite"))

        run_sample(client(), prompts, tmp_path / "a")
        again = run_sample(client(), prompts, tmp_path / "b")
    assert server.completions == 10
    assert again.summary["cache_hits"] == 10 and again.summary["requests"] == 0
    # Records are written as items finish, so under concurrency their order may differ.
    lines = [sorted((tmp_path / d / "responses.jsonl").read_text().splitlines()) for d in "ab"]
    assert lines[0] == lines[1] and len(lines[0]) == 10


def _open_cache_at(path, start, results) -> None:
    while time.time() < start:
        pass
    try:
        ResponseCache(path).get("key")
        results.put("ok")
    except Exception as e:  # what a rank of a launch died of: "database is locked"
        results.put(f"{type(e).__name__}: {e}")


def test_processes_opening_a_new_cache_at_once_all_open_it(tmp_path):
    """The ranks of a launch open one new cache together: SQLite answers all but one
    "locked" at once while the cache becomes WAL (before the fix, 21 of 160 such opens)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    said = []
    for attempt in range(20):
        results = context.Queue()
        start = time.time() + 0.3
        openers = [context.Process(target=_open_cache_at,
                                   args=(tmp_path / f"{attempt}.sqlite", start, results))
                   for _ in range(4)]
        for p in openers:
            p.start()
        said += [results.get(timeout=120) for _ in openers]
        for p in openers:
            p.join()
    assert said == ["ok"] * 80, [s for s in said if s != "ok"][:3]


def test_api_keys_never_reach_disk_or_output(tmp_path):
    secret = "sk-test-DO-NOT-LEAK-0123456789"

    def echoes_the_key(request):
        raise ValueError(f"invalid key {secret}")  # a server that echoes it back

    for handler, out in ((fill_reply, "ok"), (echoes_the_key, "bad")):
        with StubServer(handler=handler, fault_rate=0.2, retry_after=0.01) as server:
            proc = cai("sample", "--prompts", prompts_file(tmp_path, 5), "--model", "openai:m",
                       "--base-url", server.url, "--out", tmp_path / out, "--cache",
                       tmp_path / f"{out}.sqlite", env={"OPENAI_API_KEY": secret})
            stdout, stderr = proc.communicate(timeout=60)
        assert server.headers[0]["authorization"] == f"Bearer {secret}"  # it was used
        assert secret not in stdout + stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert list(read_jsonl(tmp_path / "bad" / "failed.jsonl"))


@pytest.mark.parametrize("spec", ["openai:m", "anthropic:m"])
def test_missing_key_is_a_clear_error(tmp_path, spec):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.run([sys.executable, "-m", "cai", "sample", "--prompts",
                           prompts_file(tmp_path, 1), "--model", spec, "--out", tmp_path / "o"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "_API_KEY is not set" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_anthropic_records_only_the_sampling_it_sends_and_warns_once(tmp_path):
    """The Anthropic SDK sends no temperature, top_p or seed: records must not claim them."""
    prompts = prompts_file(tmp_path, 3)
    with StubServer() as server:
        run = cai("sample", "--prompts", prompts, "--model", "anthropic:claude-x", "--n", "2",
                  "--temperature", "0.3", "--base-url", server.root_url, "--no-cache",
                  "--out", tmp_path / "o", env={"ANTHROPIC_API_KEY": "k"})
        _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert stderr.count("warning: 'temperature' cannot be sent to anthropic:claude-x") == 1
    sent = [r for r in server.requests if "messages" in r]
    assert sent and all("temperature" not in r and "top_p" not in r for r in sent)
    for record in read_jsonl(tmp_path / "o" / "responses.jsonl"):
        s = record["sampling"]
        assert s["temperature"] is None and s["top_p"] is None and s["seed"] is None
        assert s["max_tokens"] == 256
    config = json.loads((tmp_path / "o" / "summary.json").read_text())["config"]["sampling"]
    assert config["temperature"] is None and config["max_tokens"] == 256
