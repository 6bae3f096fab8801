"""`cai train grpo`: GRPO with the AI judge as the reward, on the CPU with the embedded model
as both policy and judge; the reward's guards; bad input refused before any model loads."""

import json
import math
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from cai.inputs import read_prompts
from cai.records.read import read_jsonl
from cai.records.rewrite import write_jsonl
from cai.training.grpo import steps
from cai.training.rewards import expected_score, pearson
from tests.helpers import cai, needs_local, needs_train


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "Name a colour.", "reference": "Blue."},
        {"prompt": "Say hello politely."},
        {"prompt": "What is two plus two?", "reference": "Four."},
        {"prompt": "Name a fruit.", "reference": "An apple."}]))
    return path


def test_bad_input_is_one_error_line_before_any_model_loads(prompts, tmp_path):
    config = tmp_path / "t.yaml"
    config.write_text("trl:\n  num_generations: 2\n  per_device_train_batch_size: 3\n")
    cases = [
        (["--reward", "reference"], f"{prompts}:2: 1 prompts have no 'reference' answer"),
        (["--reward", "score", "--judge", "fake:echo", "--no-text-fallback"],
         "fake:echo gives none"),
        (["--config", config], "= 3 does not divide by num_generations = 2"),
        (["--batch"], "--batch does not go with GRPO"),
    ]
    for extra, message in cases:
        done = cai("train", "grpo", "--prompts", prompts, "--model", "local", "--out",
                   tmp_path / "o", *extra)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("error:") == 1 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()


@needs_train
def test_a_dry_run_counts_the_judges_requests_and_writes_nothing(prompts, tmp_path):
    """3 steps of 4 completions in groups of 2: 6 groups. Pairwise asks for G(G-1) = 2
    requests a group (both orders), reference 2G = 4, score G = 2. No model loads, nothing is
    sent (an OpenAI judge, with no key), nothing is written."""
    config = tmp_path / "t.yaml"
    config.write_text("trl:\n  max_steps: 3\n  num_generations: 2\n"
                      "  per_device_train_batch_size: 4\n  max_completion_length: 16\n")
    env: dict[str, str | None] = {"OPENAI_API_KEY": None}
    for mode, requests in (("pairwise", 12), ("reference", 24), ("score", 12)):
        extra = ["--reference-model", "local"] if mode == "reference" else []
        done = cai("train", "grpo", "--prompts", prompts, "--judge", "openai:gpt-4o-mini",
                   "--reward", mode, "--config", config, "--out", tmp_path / "o", "--dry-run",
                   *extra, env=env)
        assert done.returncode == 0, done.stderr
        estimate = json.loads(done.stdout)
        assert (estimate["steps"], estimate["groups"], estimate["requests"]) == (3, 6, requests)
        assert estimate["tokens_in"] > 0 and estimate["cost_usd"] > 0, estimate
        assert not (tmp_path / "o").exists()


def test_the_score_is_the_expected_value_over_the_score_tokens():
    def completion(text, top):
        return SimpleNamespace(text=text, logprobs=[SimpleNamespace(
            top={t: math.log(p) for t, p in top.items()})] if top else [])

    assert expected_score(completion("8", {"8": 0.5, "6": 0.25, "x": 0.25}), True) == \
        pytest.approx((8 * 0.5 + 6 * 0.25) / 0.75)
    assert expected_score(completion("I'd say 7/10.", {}), True) == 7.0
    assert expected_score(completion("I'd say 7/10.", {}), False) is None
    assert expected_score(completion("no number", {}), True) is None


def test_guards_and_logged_steps_are_numbers():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 1, 1], [0.2, 0.5, 0.9]) == 0.0
    history = [{"loss": 0.1, "step": 1},
               {"reward": 0.52, "reward_std": 0.1, "judge/flip_rate": 0.5,
                "judge/length_corr": -0.2, "step": 1, "note": "not a number"}]
    assert steps(history) == [{"step": 1, "reward": 0.52, "reward_std": 0.1,
                               "flip_rate": 0.5, "length_corr": -0.2}]


@needs_local
@needs_train
@pytest.mark.slow
def test_two_grpo_steps_on_the_cpu_with_the_embedded_judge(prompts, tmp_path):
    config = tmp_path / "t.yaml"
    config.write_text("trl:\n  max_steps: 2\n  num_generations: 2\n"
                      "  per_device_train_batch_size: 2\n  max_completion_length: 12\n")
    out = tmp_path / "grpo"
    done = cai("train", "grpo", "--prompts", prompts, "--model", "local", "--judge", "local",
               "--out", out, "--lora", "--config", config, "--length-penalty", "0.1",
               env={"OMP_NUM_THREADS": "1"}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    said = " ".join(done.stdout.split())
    assert re.search(r"judge local \(pairwise\): \d+ requests, \d+ from the cache; over the "
                     r"steps: reward std [\d.]+, position flips [\d.]+", said), said[-500:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["kind"] == "grpo" and summary["steps"] == 2
    logged = summary["grpo"]["steps"]
    assert [s["step"] for s in logged] == [1, 2]
    for s in logged:
        for key in ("reward", "reward_std", "flip_rate", "length_corr", "refusal_rate",
                    "hedge_rate", "mean_length"):
            assert isinstance(s[key], float) and math.isfinite(s[key]), (key, s)
        assert 0 <= s["flip_rate"] <= 1
    assert summary["grpo"]["reward"] == "pairwise" and summary["grpo"]["judge"] == "local"
    # The independence guard finds the reward's judge in the checkpoint, by identity.
    from cai.evals.policy import training_judge
    from cai.templates import Templates

    found = training_judge(f"hf:{out}", None, Templates())
    assert found and found["reward"] and found["judge"] == "local"
    assert found["identity"].startswith("local:")
    assert found["templates"] == Templates().hashes("judge", "_judge_data")
    # Every completion the judge rewarded, with its step, prompt id and reward.
    judged = list(read_jsonl(out / "completions.jsonl"))
    assert [r["step"] for r in judged] == [1, 1, 2, 2]
    ids = {item.id for item in read_prompts(prompts)}
    assert all(isinstance(r["reward"], float) and r["completion"] for r in judged)
    assert all(r["reward"] == pytest.approx(r["judge_reward"] - 0.1 * r["length"] / 12)
               for r in judged)
    assert {r["id"] for r in judged} <= ids
    assert "GRPO" in (out / "README.md").read_text()
    # The adapter loads and generates through hf:.
    again = cai("sample", "--prompts", prompts, "--model", f"hf:{out}", "--n", "2",
                "--limit", "1", "--out", tmp_path / "s", timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]


@needs_local
@needs_train
@pytest.mark.slow
def test_every_process_of_a_launch_logs_its_completions(prompts, tmp_path, local_model):
    """Two processes (torchrun on the CPU), one completions.jsonl: each process's groups are
    in it, every line whole (only process 0 logged before)."""
    config = tmp_path / "t.yaml"
    config.write_text("trl:\n  max_steps: 1\n  num_generations: 2\n"
                      "  per_device_train_batch_size: 2\n  max_completion_length: 8\n")
    # local_model: converted before; two processes converting at once collide.
    out = tmp_path / "grpo"
    done = subprocess.run(
        # --standalone: a free port, so that another launch on the machine cannot collide.
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "cai",
         "train", "grpo", "--prompts", str(prompts), "--model", "local", "--judge", "local",
         "--out", str(out), "--lora", "--config", str(config)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-6000:]  # the rank's error, then torchrun's
    judged = list(read_jsonl(out / "completions.jsonl"))
    assert sorted(r["process"] for r in judged) == [0, 0, 1, 1]
    assert all(r["step"] == 1 and r["completion"] for r in judged)


def test_the_completions_log_starts_afresh_or_from_the_checkpoint(tmp_path):
    from cai.training.grpo import completions_log

    log = tmp_path / "completions.jsonl"
    write_jsonl(log, [{"step": s, "completion": str(s)} for s in (1, 1, 2, 3)])
    assert completions_log(tmp_path, str(tmp_path / "checkpoint-2")) == log
    assert [r["step"] for r in read_jsonl(log)] == [1, 1, 2]
    completions_log(tmp_path, None)
    assert list(read_jsonl(log)) == []


def test_the_judge_reward_serves_a_trl_script_of_ones_own(tmp_path):
    """`cai.JudgeReward` outside `cai train grpo`: called as TRL calls a reward function,
    over any client. The fixed judge always answers "A", so every verdict flips with the
    order: each comparison is a tie, every reward 0.5, and the guard says it."""
    import asyncio

    import cai

    async def main():
        session = cai.Session(cache_path=tmp_path / "cache.sqlite")
        judge = cai.Judge(session.client("fake:fixed:A"), cai.Templates(),
                          cai.load_constitution("harmless"))
        reward = cai.JudgeReward(judge, mode="pairwise", num_generations=2,
                                 log=tmp_path / "completions.jsonl")
        try:
            prompt = [{"role": "user", "content": "Name a colour."}]
            return reward, await reward(
                prompts=[prompt] * 4,
                completions=[[{"role": "assistant", "content": c}] for c in
                             ("Blue.", "Red, like a ripe tomato.", "Green.", "I cannot say.")],
                completion_ids=[[1], [1, 2, 3, 4], [1], [1, 2, 3]], id=["a", "a", "b", "b"])
        finally:
            await session.close()

    reward, rewards = asyncio.run(main())
    assert rewards == [0.5, 0.5, 0.5, 0.5]
    assert reward.steps[0]["flip_rate"] == 1.0
    logged = list(read_jsonl(tmp_path / "completions.jsonl"))
    assert [r["id"] for r in logged] == ["a", "a", "b", "b"] and logged[1]["length"] == 4


def test_the_pairwise_reward_refuses_a_group_of_two_prompts(tmp_path):
    """Completions are compared within their group: a group whose completions answer two
    prompts (a reward whose num_generations is not the trainer's) is an error, not a score."""
    import asyncio

    import cai
    from cai.errors import CaiError

    async def main():
        session = cai.Session(cache_path=tmp_path / "cache.sqlite")
        judge = cai.Judge(session.client("fake:fixed:A"), cai.Templates(),
                          cai.load_constitution("harmless"))
        reward = cai.JudgeReward(judge, mode="pairwise", num_generations=2)
        try:
            one, two = ([{"role": "user", "content": t}] for t in ("Name a colour.", "Hi."))
            return await reward(prompts=[one, one, one, two],
                                completions=[[{"role": "assistant", "content": c}]
                                             for c in ("Blue.", "Red.", "Green.", "Hello.")])
        finally:
            await session.close()

    with pytest.raises(CaiError, match="completions 2-3 as one group, but they answer 2 "
                                       "prompts"):
        asyncio.run(main())


def test_processes_appending_at_once_leave_whole_lines(tmp_path):
    """completions.jsonl is written by every process of a launch at once."""
    log = tmp_path / "completions.jsonl"
    script = ("import sys; from cai.records.append import append_shared\n"
              "for n in range(200):\n"
              "    append_shared(sys.argv[1], [{'process': sys.argv[2], 'n': n, "
              "'completion': sys.argv[2] * 20000}] * 2)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(log), str(k)])
             for k in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    rows = list(read_jsonl(log))
    assert len(rows) == 3 * 200 * 2
    assert all(r["completion"] == r["process"] * 20000 for r in rows)


def test_a_panels_reward_is_the_mean_of_its_judges_scores(tmp_path):
    """Two judges that score every completion 8 and 2 out of 10 (read from their text): each
    reward is the mean of (8 - 1) / 9 and (2 - 1) / 9, or their weighted mean."""
    import asyncio

    import cai

    async def rewards(weights):
        session = cai.Session(cache_path=tmp_path / "cache.sqlite")
        judges = [cai.Judge(session.client(spec), cai.Templates(),
                            cai.load_constitution("harmless"))
                  for spec in ("fake:fixed:8", "fake:fixed:2")]
        reward = cai.JudgeReward(cai.Panel(judges, weights), mode="score", num_generations=2)
        try:
            prompt = [{"role": "user", "content": "Name a colour."}]
            return await reward(prompts=[prompt] * 2,
                                completions=[[{"role": "assistant", "content": c}]
                                             for c in ("Blue.", "Red.")])
        finally:
            await session.close()

    assert asyncio.run(rewards(None)) == pytest.approx([(7 / 9 + 1 / 9) / 2] * 2)
    assert asyncio.run(rewards([3.0, 1.0])) == pytest.approx([(3 * 7 / 9 + 1 / 9) / 4] * 2)


@needs_train
def test_a_dry_run_with_a_panel_counts_each_judge(prompts, tmp_path):
    config = tmp_path / "t.yaml"
    config.write_text("trl:\n  max_steps: 3\n  num_generations: 2\n"
                      "  per_device_train_batch_size: 4\n  max_completion_length: 16\n")
    done = cai("train", "grpo", "--prompts", prompts, "--judge", "openai:gpt-4o-mini",
               "--judge", "fake:fixed:A", "--config", config, "--out", tmp_path / "o",
               "--dry-run", env={"OPENAI_API_KEY": None}, check=True)
    estimate = json.loads(done.stdout)
    assert estimate["judge"] == ["openai:gpt-4o-mini", "fake:fixed:A"]
    assert estimate["requests"] == 24  # 12 for each judge, as one judge's pairwise run asks
