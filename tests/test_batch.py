"""Provider batch mode end to end: `--batch` passes, `cai batch status` and `cai batch collect`.

OpenAI's Batch API and Anthropic's Message Batches cannot be reached from here. These tests
run against a local stand-in (tests.stubs.stub_batches, served by tests.stubs.stub_server on
127.0.0.1) that follows the documented endpoints and file formats, validates every
request line against the documented schema, and returns results shuffled with errored and
expired entries among them. The official SDKs do the talking, over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import anthropic
import openai
import pytest

from cai.chat import Completion, Usage
from cai.errors import CaiError
from cai.models import provider_batch as batch
from cai.models.provider_batch import Limit, anthropic_outcome, openai_outcome, split
from cai.records.read import read_jsonl
from tests.helpers import cai as run_cai
from tests.helpers import invoke
from tests.stubs import stub_batches
from tests.stubs.stub_batches import BatchStore
from tests.stubs.stub_server import StubServer, completion_body, message_body

PROVIDERS = {
    # provider: (model spec, base URL of the stand-in, reason a 400 entry fails with)
    "openai": ("openai:gpt-4o-mini", lambda s: s.url, "HTTP 400: stand-in error"),
    "anthropic": ("anthropic:claude-haiku-4-5", lambda s: s.root_url,
                  "invalid_request_error: stand-in error"),
}


@pytest.fixture(autouse=True)
def env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "fake-openai-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "fake-anthropic-key")


def cai(*args: object) -> str:
    """What `cai ARGS`, run in this process, printed: it must succeed."""
    return invoke(*args, check=True).output


def write_prompts(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"Question {i} about topic {i}\n" for i in range(n)))
    return path


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def state(out: Path) -> list[dict]:
    return json.loads((out / "batches.json").read_text())["batches"]


def run_passes(stage: list[object], out: Path, max_passes: int = 8) -> int:
    """Run a stage with --batch, collect, and run it again, until nothing is deferred."""
    for n in range(1, max_passes + 1):
        cai(*stage, "--out", out, "--batch")
        if summary(out)["finished"]:
            return n
        assert state(out)[-1]["id"] in cai("batch", "status", "--out", out)
        assert "collected 1 batch" in cai("batch", "collect", "--out", out)
    raise AssertionError(f"still deferred after {max_passes} passes")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_sample_in_passes_maps_shuffled_results_back(provider, tmp_path):
    spec, url, reason = PROVIDERS[provider]
    store = BatchStore(polls=1, error_share=0.15, expire_share=0.25, seed=4)
    out = tmp_path / "out"
    with StubServer(batches=store) as server:
        stage = ["sample", "--prompts", write_prompts(tmp_path, 16), "--n", "1", "--model",
                 spec, "--base-url", url(server), "--cache", tmp_path / "c.sqlite"]
        passes = run_passes(stage, out)

    outcomes = [b.outcome for b in store.batches.values()]
    expired = {k for o in outcomes for k, v in o.items() if v == "expired"}
    errored = {k for o in outcomes for k, v in o.items() if v == "errored"}
    assert expired and errored and passes >= 3
    # every expired request went into a later batch and finished there
    assert all(any(o.get(k) in ("ok", "errored") for o in outcomes) for k in expired)

    records = list(read_jsonl(out / "responses.jsonl"))
    failed = list(read_jsonl(out / "failed.jsonl"))
    assert len(records) == len({r["id"] for r in records})
    assert len(records) + len(failed) == 16 and len(failed) == len(errored)
    for r in records:  # the stand-in echoes the prompt: each answer belongs to its prompt
        assert r["responses"] == ["ok: " + r["prompt"][-1]["content"]]
    assert all(f["error"].startswith(reason) for f in failed)

    batches = state(out)
    assert all(b["collected"] and b["provider"] == provider and b["model"] == spec
               and len(b["custom_ids"]) == b["requests"] and b["submitted"] for b in batches)
    assert sum(b["results"]["succeeded"] for b in batches) == len(records)
    assert sum(b["results"]["tokens_in"] for b in batches) > 0
    assert all(b["cost_usd"] > 0 for b in batches)  # a known price, halved for batches


def batched_sample(tmp_path, server, out):
    """`cai sample` of 3 prompts through the stand-in's batch API, as a command line."""
    return ["sample", "--prompts", write_prompts(tmp_path, 3), "--n", "1", "--model",
            "openai:gpt-4o-mini", "--base-url", server.url, "--cache", tmp_path / "c.sqlite",
            "--out", out, "--batch"]


def test_status_and_collect_work_from_a_fresh_process(tmp_path):
    out = tmp_path / "out"
    with StubServer(batches=BatchStore(polls=2)) as server:
        stage = batched_sample(tmp_path, server, out)
        cai(*stage)
        shown = cai("batch", "status", "--out", out)
        assert state(out)[0]["id"] in shown and "in_progress" in shown
        # the second status read still says in progress, so collect leaves it for later
        assert "0 batch(es), 1 still running" in cai("batch", "collect", "--out", out)
        # a new process knows the batch from batches.json alone
        got = run_cai("batch", "collect", "--out", out, env={"COLUMNS": "200"},
                      check=True).stdout
        assert "collected 1 batch(es), 0 still running: 3 succeeded" in got
        cai(*stage)
    assert summary(out)["finished"] and summary(out)["cache_hits"] == 3


def test_a_base_url_with_credentials_is_recorded_without_them(tmp_path):
    """batches.json keeps the URL with its password hidden; collect gets it back whole from
    --base-url, and without it says so."""
    out = tmp_path / "out"
    with StubServer(batches=BatchStore(polls=0)) as server:
        secret = server.url.replace("http://", "http://me:hunter2@")
        stage = batched_sample(tmp_path, server, out)
        stage[stage.index(server.url)] = secret
        cai(*stage)
        [record] = state(out)
        assert record["base_url"].startswith("http://***@127.0.0.1:")
        assert "hunter2" not in (out / "batches.json").read_text()
        with pytest.raises(CaiError, match="pass that URL again with --base-url"):
            cai("batch", "collect", "--out", out)
        assert "collected 1 batch" in cai("batch", "collect", "--out", out, "--base-url", secret)


def test_revise_finishes_after_one_pass_per_step(tmp_path):
    out = tmp_path / "out"
    with StubServer(batches=BatchStore()) as server:
        stage = ["revise", "--prompts", write_prompts(tmp_path, 4), "--rounds", "1",
                 "--model", "openai:gpt-4o-mini", "--base-url", server.url,
                 "--cache", tmp_path / "c.sqlite"]
        passes = run_passes(stage, out)
    assert passes == 4  # initial answer, critique, revision, then all from the cache
    assert [b["requests"] for b in state(out)] == [4, 4, 4]
    sft = list(read_jsonl(out / "sft.jsonl"))
    assert sorted(r["id"] for r in sft) == sorted({r["id"] for r in sft}) and len(sft) == 4
    trace = list(read_jsonl(out / "trace.jsonl"))
    assert [s["step"] for s in trace[0]["steps"]] == ["initial", "critique", "revision"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_requests_are_split_at_the_limit(provider, tmp_path, monkeypatch):
    monkeypatch.setitem(batch.LIMITS, provider, Limit(requests=3, bytes=10**9))
    spec, url, _ = PROVIDERS[provider]
    store = BatchStore()
    out = tmp_path / "out"
    with StubServer(batches=store) as server:
        stage = ["sample", "--prompts", write_prompts(tmp_path, 7), "--n", "1", "--model",
                 spec, "--base-url", url(server), "--cache", tmp_path / "c.sqlite"]
        cai(*stage, "--out", out, "--batch")
        assert [b["requests"] for b in state(out)] == [3, 3, 1]
        assert [len(b.requests) for b in store.batches.values()] == [3, 3, 1]
        if provider == "openai":  # one uploaded file per batch
            assert len({b.input_file_id for b in store.batches.values()}) == 3
        assert "collected 3 batch(es)" in cai("batch", "collect", "--out", out)
        cai(*stage, "--out", out, "--batch")
    assert summary(out)["finished"] and summary(out)["done"] == 7


def test_split_keeps_order_within_both_limits():
    sizes = [5, 5, 5, 9, 1, 1, 1, 1]
    assert split(sizes, lambda n: n, Limit(requests=3, bytes=10)) == [
        [5, 5], [5], [9, 1], [1, 1, 1]]


def test_requests_in_flight_are_not_sent_twice(tmp_path):
    out = tmp_path / "out"
    store = BatchStore(polls=5)
    with StubServer(batches=store) as server:
        stage = batched_sample(tmp_path, server, out)
        cai(*stage)
        assert "3 requests for openai:gpt-4o-mini are in a batch not collected yet" in cai(
            *stage)
    assert len(store.batches) == 1 and len(state(out)) == 1


def test_batch_needs_a_provider_with_a_batch_api(tmp_path):
    with pytest.raises(CaiError, match="--batch needs an openai: or anthropic: model"):
        cai("sample", "--prompts", write_prompts(tmp_path, 1), "--model", "fake:echo",
            "--cache", tmp_path / "c.sqlite", "--out", tmp_path / "out", "--batch")
    with pytest.raises(CaiError, match="no batches.json"):
        cai("batch", "status", "--out", tmp_path / "out")


REQUEST = {"model": "m", "messages": [{"role": "user", "content": "Hi there"}],
           "max_tokens": 5}


def test_openai_result_lines_map_to_cache_entries():
    body = {**completion_body(REQUEST, {"content": "Hello"}),
            "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}}
    ok = {"custom_id": "k", "response": {"status_code": 200, "body": body}, "error": None}
    assert openai_outcome(ok, "m") == Completion("Hello", "stop", Usage(7, 1), "m")

    def failed(status: int) -> dict:
        return {"custom_id": "k", "error": None, "response": {
            "status_code": status, "body": {"error": {"message": "bad"}}}}

    assert openai_outcome(failed(400), "m") == "HTTP 400: bad"
    assert openai_outcome(failed(429), "m") is None  # worth sending again: not cached
    assert openai_outcome(failed(503), "m") is None
    expired = {"custom_id": "k", "response": None, "error": {"code": "batch_expired"}}
    assert openai_outcome(expired, "m") is None
    refusal = completion_body(REQUEST, {"content": "x"})
    refusal["choices"][0]["message"] = {"role": "assistant", "content": None,
                                        "refusal": "I can't help with that."}
    ok["response"]["body"] = refusal
    assert openai_outcome(ok, "m") == "the provider refused: I can't help with that."


def test_anthropic_results_map_to_cache_entries():
    message = {**message_body(REQUEST, {"content": "Hello"}),
               "usage": {"input_tokens": 7, "output_tokens": 1}}
    assert anthropic_outcome({"type": "succeeded", "message": message}, "m") == Completion(
        "Hello", "stop", Usage(7, 1), "m")

    def errored(kind: str) -> dict:
        return {"type": "errored", "error": {"type": "error", "error": {
            "type": kind, "message": "bad"}}}

    assert anthropic_outcome(errored("invalid_request_error"), "m") == \
        "invalid_request_error: bad"
    assert anthropic_outcome(errored("api_error"), "m") is None
    assert anthropic_outcome({"type": "expired"}, "m") is None
    assert anthropic_outcome({"type": "canceled"}, "m") is None
    refused = {"type": "succeeded", "message": {**message, "stop_reason": "refusal"}}
    assert "refused" in str(anthropic_outcome(refused, "m"))


def openai_line(custom_id: str = "a", **changes: object) -> dict:
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": dict(REQUEST)}
    return {**line, **changes}


@pytest.mark.parametrize(("lines", "problem"), [
    ([openai_line("a"), openai_line("a")], "unique"),
    ([openai_line(url="/v1/completions")], "url must be"),
    ([openai_line(method="GET")], "method must be POST"),
    ([openai_line(body={"model": "m"})], "messages"),
    ([openai_line("a"), openai_line("b", body={**REQUEST, "model": "other"})], "one model"),
    ([openai_line(str(i)) for i in range(3)], "at most 2"),
])
def test_stand_in_rejects_bad_openai_files(lines, problem, monkeypatch):
    monkeypatch.setattr(stub_batches, "OPENAI_MAX_LINES", 2)
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()

    async def upload(url: str) -> None:
        async with openai.AsyncOpenAI(api_key="k", base_url=url, max_retries=0) as client:
            await client.files.create(file=("f.jsonl", data), purpose="batch")

    with StubServer() as server, pytest.raises(openai.BadRequestError, match=problem):
        asyncio.run(upload(server.url))


@pytest.mark.parametrize(("requests", "problem"), [
    ([{"custom_id": "has space", "params": REQUEST}], "custom_id: must match"),
    ([{"custom_id": "a" * 65, "params": REQUEST}], "custom_id: must match"),
    ([{"custom_id": "a", "params": REQUEST}] * 2, "used twice"),
    ([{"custom_id": "a", "params": {"model": "m", "messages": REQUEST["messages"]}}],
     "max_tokens"),
    ([{"custom_id": "a", "params": {**REQUEST, "messages": [
        {"role": "system", "content": "x"}]}}], "messages"),
    ([{"custom_id": str(i), "params": REQUEST} for i in range(3)], "at most 2"),
])
def test_stand_in_rejects_bad_anthropic_batches(requests, problem, monkeypatch):
    monkeypatch.setattr(stub_batches, "ANTHROPIC_MAX_REQUESTS", 2)

    async def create(url: str) -> None:
        async with anthropic.AsyncAnthropic(api_key="k", base_url=url, max_retries=0) as client:
            await client.messages.batches.create(requests=requests)

    with StubServer() as server, pytest.raises(anthropic.BadRequestError, match=problem):
        asyncio.run(create(server.root_url))


@pytest.mark.parametrize(("limit", "sent", "reason"), [
    (["--max-requests", "3"], 3, "max-requests 3 reached"),
    # gpt-4o-mini at batch prices: each request is estimated at about $0.00008 (its prompt,
    # and 256 tokens out), so two fit under $0.0002 and a third would pass it.
    (["--max-cost", "0.0002"], 2, "max-cost $0.0002 reached (estimated, batch mode)"),
])
def test_batch_mode_counts_queued_requests_against_the_budget(tmp_path, limit, sent, reason):
    out = tmp_path / "out"
    with StubServer(batches=BatchStore(polls=1)) as server:
        cai("sample", "--prompts", write_prompts(tmp_path, 10), "--n", "1", "--model",
            "openai:gpt-4o-mini", "--base-url", server.url, "--cache", tmp_path / "c.sqlite",
            "--out", out, "--batch", "--concurrency", "1", *limit)
    assert sum(b["requests"] for b in state(out)) == sent
    s = summary(out)
    assert s["stopped_reason"] == reason and s["deferred"] == sent and not s["finished"]
