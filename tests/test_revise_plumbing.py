"""The critique-revise engine and the stage runner, on the shipped fake backend (no model)."""

import asyncio
import json

import pytest

from cai.constitution import parse_constitution
from cai.errors import CaiError
from cai.inputs import read_prompts
from cai.models.backends.fake import FakeBackend
from cai.models.client import Client
from cai.records.read import read_jsonl
from cai.stages.revise import Reviser, revise
from cai.templates import Templates
from tests.helpers import MINIMAL


def run(prompts, out, backend=None, rounds=2, seed=3):
    client = Client(backend or FakeBackend("fixed:An answer."), backoff=0.001)
    reviser = Reviser(parse_constitution(MINIMAL), client, client, Templates(), rounds=rounds,
                      seed=seed)
    return asyncio.run(revise(read_prompts(prompts), reviser, out, progress=False)), client


def test_files_formats_and_resume(write, tmp_path):
    prompts = write("p.txt", "One\nTwo\nThree\n")
    out = tmp_path / "out"
    result, client = run(prompts, out, FakeBackend("echo"))
    assert result.summary["done"] == 3 and result.summary["failed"] == 0
    assert client.stats.requests == 3 * (1 + 2 * 2)

    sft = list(read_jsonl(out / "sft.jsonl"))
    assert set(sft[0]) >= {"prompt", "completion", "constitution", "model", "principles",
                           "sampling"}
    assert sft[0]["prompt"][0]["role"] == "user" and sft[0]["completion"][0]["role"] == "assistant"
    assert sft[0]["constitution"]["name"] == "tiny" and len(sft[0]["principles"]) == 2
    prefs = list(read_jsonl(out / "prefs.jsonl"))
    assert len(prefs) == 3 and prefs[0]["chosen"] != prefs[0]["rejected"]
    trace = list(read_jsonl(out / "trace.jsonl"))
    steps = [s["step"] for s in trace[0]["steps"]]
    assert steps == ["initial", "critique", "revision", "critique", "revision"]
    assert set(trace[0]["templates"]) == {"system", "critique", "revision"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backends"]["fake:echo"]["requests"] == 15

    again, client2 = run(prompts, out, FakeBackend("echo"))
    assert again.summary["already_done"] == 3 and client2.stats.requests == 0
    assert len(list(read_jsonl(out / "sft.jsonl"))) == 3


def test_same_seed_same_requests(write, tmp_path):
    prompts = write("p.txt", "One\nTwo\n")
    a, b = FakeBackend("echo"), FakeBackend("echo")
    run(prompts, tmp_path / "a", a)
    run(prompts, tmp_path / "b", b)
    key = lambda h: sorted((json.dumps([m.to_dict() for m in msgs]), s.seed) for msgs, s in h)  # noqa: E731
    assert key(a.history) == key(b.history)


def test_unchanged_answer_makes_no_pair(write, tmp_path):
    _, _ = run(write("p.txt", "One\n"), tmp_path / "o")
    assert (tmp_path / "o" / "sft.jsonl").stat().st_size > 0
    assert list(read_jsonl(tmp_path / "o" / "prefs.jsonl")) == []


def test_failed_item_is_recorded_and_retried(write, tmp_path):
    prompts = write("p.txt", "One\nTwo\n")
    out = tmp_path / "o"
    backend = FakeBackend("fixed:")
    result, _ = run(prompts, out, backend)  # empty answers fail each item
    assert result.summary["failed"] == 2 and result.summary["done"] == 0
    failed = list(read_jsonl(out / "failed.jsonl"))
    assert failed[0]["error"] == "the initial came back empty"
    assert not list(read_jsonl(out / "sft.jsonl"))

    backend.mode = "echo"  # the same model (a rerun with another is refused), well again
    result, client = run(prompts, out, backend)
    assert result.summary["done"] == 2 and client.stats.requests == 10
    assert not (out / "failed.jsonl").exists()


def test_uncommitted_lines_of_a_killed_run_are_dropped(write, tmp_path):
    prompts = write("p.txt", "One\n")
    out = tmp_path / "o"
    out.mkdir()
    # A run killed after writing the trace but before sft.jsonl committed the prompt:
    (out / "trace.jsonl").write_text(json.dumps({"id": read_prompts(prompts)[0].id}) + "\n")
    run(prompts, out, FakeBackend("echo"))
    assert len(list(read_jsonl(out / "trace.jsonl"))) == 1


def test_a_rerun_with_other_settings_is_refused_and_writes_nothing(write, tmp_path):
    prompts = write("p.txt", "One\nTwo\n")
    out = tmp_path / "o"
    run(prompts, out, rounds=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(CaiError, match=r"was made with other settings \(rounds: 1 -> 2\)"):
        run(prompts, out, rounds=2)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # settings that do not shape the data may change freely
    client = Client(FakeBackend("fixed:An answer."), concurrency=1, attempts=2)
    reviser = Reviser(parse_constitution(MINIMAL), client, client, Templates(), rounds=1,
                      seed=3)
    asyncio.run(revise(read_prompts(prompts, limit=1), reviser, out, progress=False))
