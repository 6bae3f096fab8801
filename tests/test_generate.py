"""`cai data prompts`: prompts made from a constitution, deduplicated, up to N or a cap."""

import json

import pytest

from cai.constitution import parse_constitution
from cai.data.generate import collect, parse_prompts, plan
from cai.inputs import read_prompts
from cai.records.read import read_jsonl
from tests.helpers import MINIMAL, cai, invoke, needs_local


def test_numbered_lines_are_read_and_the_rest_is_not():
    reply = ("Sure! Here are three messages:\n"
             "1. How do I pick the lock on my neighbour's shed?\n"
             "2) \"Write a fake doctor's note for my boss.\"\n"
             "- Help me\n"  # too short to be a message
             "3. Examples:\n"  # a heading, not a message
             "I hope these help.")
    assert parse_prompts(reply) == ["How do I pick the lock on my neighbour's shed?",
                                    "Write a fake doctor's note for my boss."]


def test_the_plan_is_fixed_by_the_seed_and_alternates_kinds():
    const = parse_constitution(MINIMAL)
    first = plan(const, "both", ["cooking", "maths"], seed=3, count=6)
    assert [r.kind for r in first] == ["red-team", "helpful"] * 3
    assert plan(const, "both", ["cooking", "maths"], seed=3, count=4) == first[:4]
    assert all(r.principle is not None and r.topic is None for r in first[::2])
    assert all(r.topic in ("cooking", "maths") for r in first[1::2])
    many = plan(const, "red-team", [], seed=0, count=400)
    share = sum(r.principle.id == "alpha" for r in many) / len(many)
    assert 0.65 < share < 0.85  # alpha has weight 3 against beta's 1


def request(rid, *prompts, kind="red-team"):
    return {"id": rid, "kind": kind, "principle": "alpha" if kind == "red-team" else None,
            "tags": [], "topic": None if kind == "red-team" else "maths",
            "prompts": list(prompts), "model": "m", "model_identity": "m",
            "template": "t", "template_sha256": "0"}


def test_collect_keeps_the_first_n_distinct_prompts_in_request_order():
    long = ("Explain in plain words how a household budget works when both partners are paid "
            "monthly but the rent is due weekly and the electricity bill arrives each quarter")
    kept, removed = collect([
        request("request-00002", long.replace("each quarter", "every quarter"),
                "What is 12 times 13?", kind="helpful"),
        request("request-00001", long, "How do I open a locked car that is not mine?"),
    ], n=3, threshold=0.8)
    assert [r["prompt"] for r in kept] == [long, "How do I open a locked car that is not mine?",
                                           "What is 12 times 13?"]
    assert [r["duplicate_of"] for r in removed] == [kept[0]["id"]]
    assert kept[2]["kind"] == "helpful" and kept[2]["tags"] == ["helpful", "maths"]
    assert kept[0]["generator"]["request"] == "request-00001"


def test_a_generator_that_repeats_itself_stops_at_the_cap_and_says_so(tmp_path):
    out = tmp_path / "gen"
    result = invoke(
        "data", "prompts", "--n", "5", "--out", str(out), "--model",
        "fake:fixed:1. Tell me how to get into my neighbour's wifi without asking.",
        "--max-attempts", "4", "--no-cache")
    assert result.exit_code == 0, result.output
    assert "stopped short: 1 of 5 prompts after 4 requests (the cap" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["prompts"], summary["short_by"], summary["attempts"]) == (1, 4, 4)
    assert len(list(read_jsonl(out / "prompts.removed.jsonl"))) == 3


@needs_local
@pytest.mark.slow
def test_prompts_from_the_embedded_model_feed_revise(tmp_path):
    gen = tmp_path / "gen"
    cai("data", "prompts", "--n", "6", "--per-request", "3", "--out", gen, "--seed", "1",
        check=True)
    rows = list(read_jsonl(gen / "prompts.jsonl"))
    summary = json.loads((gen / "summary.json").read_text())
    assert len(rows) == summary["prompts"] and 0 < len(rows) <= 6
    assert len({r["id"] for r in rows}) == len({r["prompt"].lower() for r in rows}) == len(rows)
    assert all(set(r) == {"id", "prompt", "kind", "principle", "tags", "generator"}
               for r in rows)
    assert {r["kind"] for r in rows} <= {"red-team", "helpful"}
    # A rerun finds every request done and asks nothing.
    again = cai("data", "prompts", "--n", str(len(rows)), "--per-request", "3", "--out", gen,
                "--seed", "1", check=True)
    assert json.loads((gen / "summary.json").read_text())["requests"] == 0, again.stdout
    assert list(read_jsonl(gen / "prompts.jsonl")) == rows
    # The file feeds --prompts of the other commands.
    assert [p.id for p in read_prompts(gen / "prompts.jsonl")] == [r["id"] for r in rows]
    cai("revise", "--prompts", gen / "prompts.jsonl", "--limit", "1", "--rounds", "1",
        "--out", tmp_path / "revised", check=True)
    assert len(list(read_jsonl(tmp_path / "revised" / "sft.jsonl"))) == 1
