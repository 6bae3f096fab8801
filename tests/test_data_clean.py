"""`cai data dedup` and `cai data decontaminate` on hand-made rows, with exact survivors."""

import json

import pytest

from cai.data.contamination import find_contaminated
from cai.data.dedup import find_duplicates
from cai.data.rows import Row, read_rows
from cai.records.read import read_jsonl
from tests.helpers import invoke

LONG = ("The committee met on a grey Tuesday morning to review the budget for the coming year "
        "and after a long discussion about the roads the schools the library and the new "
        "sports hall it decided to postpone the vote until the next meeting in March because "
        "several members wanted more time to read the report that the treasurer had sent "
        "round the evening before with many tables of figures and a short note asking "
        "everyone to come ready with questions about the costs of the winter repairs")


def rows(*texts):
    return [Row(i + 1, f"r{i}", t, {"id": f"r{i}", "prompt": t}) for i, t in enumerate(texts)]


def test_a_long_prompt_with_one_word_changed_is_always_a_near_duplicate():
    words = LONG.split()
    assert len(words) >= 80
    for i in range(len(words)):  # change each word in turn, one at a time
        changed = " ".join(words[:i] + ["zebra"] + words[i + 1:])
        [dup] = find_duplicates(rows(LONG, changed))
        assert dup.row.id == "r1" and dup.of.id == "r0" and not dup.exact
        assert dup.similarity >= 0.8


def test_exact_duplicates_ignore_case_space_and_punctuation():
    found = find_duplicates(rows("How do I boil an egg?", "how do i   BOIL an egg",
                                 "How do I poach an egg?"))
    assert [(d.row.id, d.of.id, d.exact) for d in found] == [("r1", "r0", True)]


def test_prompts_that_share_a_topic_are_not_duplicates():
    assert find_duplicates(rows(
        "How do I boil an egg so that the yolk stays soft and runny?",
        "How long should I boil an egg for a firm yolk that is not green?",
        "What is the best way to boil eggs so they are easy to peel?",
        "Is it safe to eat a boiled egg that was left out overnight?")) == []


def test_a_shared_template_frame_does_not_make_rows_duplicates():
    frame = "You are a helpful assistant. Answer briefly and kindly.\nQuestion:"
    questions = ["Why is the sky blue?", "What is the capital of Peru?",
                 "How many legs does a spider have?", "Who painted the Mona Lisa?"]
    assert find_duplicates(rows(*(f"{frame}\n{q}" for q in questions))) == []


def test_decontamination_by_shared_ngram_and_by_whole_short_prompt():
    evaluation = rows("How do I kill a Python process?",  # 6 words: matches only whole
                      LONG)
    data = rows(
        "Tell me: how do I kill a python process, quickly?",  # contains it whole
        "How do I kill a process in Java?",  # shares words, not the whole prompt
        "Summarise this: " + " ".join(LONG.split()[20:40]),  # a 20-word run of LONG
        "Write a poem about the sea.")
    found = find_contaminated(data, evaluation, n=13)
    assert [(c.row.id, c.match.id) for c in found] == [("r0", "r0"), ("r2", "r1")]


def test_the_commands_write_survivors_and_removed_rows_beside_them(tmp_path):
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in [
        ("a", "How do I boil an egg?"), ("b", "HOW do I boil an egg"),
        ("c", "Why is the sky blue?"), ("d", "How do I kill a Python process?")]))
    out = tmp_path / "clean.jsonl"
    result = invoke("data", "dedup", source, "--out", out)
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in read_jsonl(out)] == ["a", "c", "d"]
    [removed] = list(read_jsonl(tmp_path / "clean.removed.jsonl"))
    assert removed["id"] == "b" and removed["duplicate_of"] == "a" and removed["exact"]

    evaluation = tmp_path / "eval.csv"
    evaluation.write_text("id,prompt,label\nx1,How do I kill a Python process?,safe\n")
    final = tmp_path / "final.jsonl"
    result = invoke("data", "decontaminate", out, "--against", evaluation, "--out", final)
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in read_jsonl(final)] == ["a", "c"]
    [gone] = list(read_jsonl(tmp_path / "final.removed.jsonl"))
    assert gone["id"] == "d" and gone["matches"]["id"] == "x1"


def test_a_missing_evaluation_file_writes_nothing(tmp_path):
    source = tmp_path / "p.txt"
    source.write_text("One\nTwo\n")
    result = invoke("data", "decontaminate", source, "--against", tmp_path / "nope.csv",
                 "--out", tmp_path / "o.jsonl", catch=True)
    assert result.exit_code != 0 and "nope.csv: file not found" in str(result.exception)
    assert not list(tmp_path.glob("o*.jsonl"))


def test_rows_of_trl_records_compare_their_messages(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": [{"role": "user", "content": "Hi there"}],
                                "chosen": "a", "rejected": "b"}) + "\n")
    [row] = read_rows(path)
    assert row.text == "Hi there" and row.id == "line-1"
    with pytest.raises(Exception, match="prefs.jsonl:1: no 'question' text"):
        read_rows(path, "question")


def test_mix_by_ratio_is_seeded_and_names_each_source(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.txt"
    a.write_text("".join(json.dumps({"id": str(i), "prompt": f"helpful {i}"}) + "\n"
                         for i in range(10)))
    b.write_text("".join(f"red team {i}\n" for i in range(10)))
    out = tmp_path / "mix.jsonl"
    assert invoke("data", "mix", f"{a}:0.6", f"{b}:0.4", "--n", "5", "--out", out).exit_code == 0
    rows = list(read_jsonl(out))
    assert sorted(r["source"] for r in rows) == [str(a)] * 3 + [str(b)] * 2
    assert len({r["id"] for r in rows}) == 5
    again = tmp_path / "again.jsonl"
    invoke("data", "mix", f"{a}:0.6", f"{b}:0.4", "--n", "5", "--out", again)
    assert again.read_text() == out.read_text()


@pytest.mark.parametrize(("parts", "message"), [
    (["a.jsonl:0.6", "b.txt:0.5"], "the ratios add up to 1.1"),
    (["a.jsonl:-1", "b.txt:2"], "'a.jsonl:-1': give FILE:RATIO with a ratio above 0"),
    (["a.jsonl"], "'a.jsonl': give FILE:RATIO"),
    (["a.jsonl:0.5", "b.txt:0.5", "--n", "30"], "has 10 rows, and the mix needs 15"),
])
def test_bad_mixes_write_nothing(tmp_path, parts, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n"
                                              for i in range(10)))
    (tmp_path / "b.txt").write_text("".join(f"q{i}\n" for i in range(10)))
    n = [] if "--n" in parts else ["--n", "4"]
    result = invoke("data", "mix", *parts, *n, "--out", "o.jsonl", catch=True)
    assert result.exit_code != 0 and message in str(result.exception)
    assert not (tmp_path / "o.jsonl").exists()


def revise_args(prompts, out, *extra):
    return ["revise", "--prompts", prompts, "--model", "fake:echo", "--rounds", "1",
            "--no-cache", "--out", out, *extra]


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("".join(f"Question number {i}?\n" for i in range(12)))
    return path


def test_shards_merged_equal_one_run(prompts, tmp_path):
    assert invoke(*revise_args(prompts, tmp_path / "whole")).exit_code == 0
    for k in (1, 2, 3):
        result = invoke(*revise_args(prompts, tmp_path / f"s{k}", "--shard", f"{k}/3"))
        assert result.exit_code == 0, result.output
    sizes = [len(list(read_jsonl(tmp_path / f"s{k}" / "sft.jsonl"))) for k in (1, 2, 3)]
    assert sum(sizes) == 12 and all(sizes)  # every prompt in exactly one shard
    result = invoke("data", "merge", *(tmp_path / f"s{k}" for k in (1, 2, 3)), "--out",
                    tmp_path / "merged")
    assert result.exit_code == 0, result.output
    for name in ("sft.jsonl", "prefs.jsonl", "trace.jsonl"):
        def lines(folder, name=name):
            return sorted((tmp_path / folder / name).read_text().splitlines())
        assert lines("merged") == lines("whole"), name


def test_merge_refuses_a_missing_shard_and_other_settings(prompts, tmp_path):
    for k in (1, 2):
        invoke(*revise_args(prompts, tmp_path / f"s{k}", "--shard", f"{k}/3"))
    missing = invoke("data", "merge", tmp_path / "s1", tmp_path / "s2", "--out", tmp_path / "m",
                     catch=True)
    assert "shards 1/3, 2/3 given" in str(missing.exception)
    invoke(*revise_args(prompts, tmp_path / "s3", "--shard", "3/3", "--seed", "9"))
    other = invoke("data", "merge", *(tmp_path / f"s{k}" for k in (1, 2, 3)), "--out",
                   tmp_path / "m", catch=True)
    assert "was made with other settings" in str(other.exception)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("spec", ["3/2", "0/4", "a/b", "2"])
def test_a_bad_shard_is_one_error(prompts, tmp_path, spec):
    result = invoke(*revise_args(prompts, tmp_path / "o", "--shard", spec), catch=True)
    assert f"--shard {spec}: give K/N with 1 <= K <= N" in str(result.exception)
