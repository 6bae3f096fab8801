"""Training with the real embedded model (SmolLM2-135M, dequantized from its GGUF) on the CPU.

Each run takes two steps on a handful of rows: the loss is logged, every trainable parameter
moves, and what lands in --out loads and generates through the `hf:` backend.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cai.errors import CaiError, InputError
from cai.training.data import prompt_key, split_heldout
from tests.helpers import cai, needs_train

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a model hub


QUESTIONS = ["How do I boil an egg?", "Name a colour.", "What is 2+2?", "Say hello.",
             "Give me a fruit.", "What is the sea?", "Tell me a fact.", "What follows Monday?",
             "Name an animal.", "What is water made of?", "Who wrote Hamlet?",
             "What is the capital of Italy?"]
CONSTITUTION = {"name": "tiny", "version": "0.1", "sha256": "c0" * 32}
TWO_STEPS = "trl:\n  max_steps: 2\n  per_device_train_batch_size: 2\n  max_length: 96\n"


def sft_rows(n: int) -> list[dict]:
    return [{"id": f"p{i}", "prompt": [{"role": "user", "content": q}],
             "completion": [{"role": "assistant", "content": f"A short, kind answer {i}."}],
             "constitution": CONSTITUTION, "model": "local", "sampling": {"temperature": 0.6},
             "principles": ["alpha"]} for i, q in enumerate(QUESTIONS[:n])]


def pref_rows(n: int, label: float | None = 0.8) -> list[dict]:
    rows = []
    for i, q in enumerate(QUESTIONS[:n]):
        row = {"id": f"p{i}", "prompt": [{"role": "user", "content": q}],
               "chosen": [{"role": "assistant", "content": f"Happy to help: answer {i}."}],
               "rejected": [{"role": "assistant", "content": "No."}],
               "constitution": CONSTITUTION, "judge": "local", "margin": 0.4}
        if label is not None:
            row["soft_label"] = label
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- pure parts, no model


def test_heldout_split_is_by_prompt_deterministic_and_disjoint():
    rows = [{"prompt": [{"role": "user", "content": f"q{i % 15}"}], "chosen": f"c{i}"}
            for i in range(30)]  # two pairs per prompt
    split = split_heldout(rows, 0.2)
    held = {prompt_key(r) for r in split.heldout}
    assert len(held) == 3 and len(split.heldout) == 6 and split.note is None
    assert held.isdisjoint(prompt_key(r) for r in split.train)
    assert len(split.train) + len(split.heldout) == len(rows)
    assert split_heldout(list(reversed(rows)), 0.2).heldout[0]["prompt"] in \
        [r["prompt"] for r in split.heldout]

    few = split_heldout(rows[:9], 0.5)
    assert few.heldout == [] and len(few.train) == 9 and "only 9 distinct prompts" in few.note
    assert split_heldout(rows, 0).heldout == []


@needs_train
def test_config_errors_name_the_file_line_and_key(tmp_path):
    from cai.training.sft import SFT
    from cai.training.train import train

    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(3))
    cases = {"trl:\n  max_steps: 2\n  max_stepz: 3\n": ("max_stepz", ":3:", "SFTConfig"),
             "trl: {}\nlora:\n  rank: 8\n": ("rank", ":3:", "LoraConfig"),
             "trl:\n  output_dir: x\n": ("output_dir", ":2:", "--out"),
             "trainer:\n  max_steps: 2\n": ("trainer", ":1:", "`trl:`")}
    for text, expected in cases.items():
        config = tmp_path / "train.yaml"
        config.write_text(text, encoding="utf-8")
        with pytest.raises(InputError) as e:
            train(SFT(), [data], "local", tmp_path / "out", lora=True, config=config)
        assert str(config) in str(e.value)
        assert all(part in str(e.value) for part in expected), str(e.value)


@needs_train
def test_checkpointing_chosen_in_the_file_stands_under_either_name(tmp_path):
    """cai's own checkpointing default goes under the name the installed transformers takes;
    a file that sets it, under the old name or the new, is not overridden by it."""
    import dataclasses

    import torch
    from trl import SFTConfig

    from cai.training.config import TrainConfig, trl_args
    from cai.training.sft import SFT

    names = {f.name for f in dataclasses.fields(SFTConfig)}
    both = {"gradient_checkpointing", "activation_checkpointing"}
    for key in both & names:
        args, settings = trl_args(SFT(), tmp_path, False, TrainConfig(trl={key: True}))
        assert args.gradient_checkpointing is True, key
        assert settings.keys() & both == {key}
    _, settings = trl_args(SFT(), tmp_path, False, TrainConfig())
    preferred = ("activation_checkpointing" if "activation_checkpointing" in names
                 else "gradient_checkpointing")
    assert settings.keys() & both == {preferred}
    assert settings[preferred] is torch.cuda.is_available()  # on by default on a GPU only


@needs_train
def test_soft_label_loss_exact_values():
    import torch

    from cai.training.dpo import sequence_logps, soft_dpo_loss

    h = torch.tensor([0.0, 10.0, 10.0])
    loss = soft_dpo_loss(h, torch.tensor([1.0, 1.0, 0.75]), beta=0.1)
    sig = 1 / (1 + math.exp(-1.0))
    expected = [math.log(2), -math.log(sig), -(0.75 * math.log(sig) + 0.25 * math.log(1 - sig))]
    assert loss.tolist() == pytest.approx(expected, rel=1e-6)

    per_token = torch.tensor([[-1.0, -1.0, -1.0, 0.0], [-2.0, -2.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])  # chosen 3 tokens, rejected 2
    assert sequence_logps(per_token, mask).tolist() == [-3.0, -4.0]
    assert sequence_logps(per_token, mask, ld_alpha=0.5).tolist() == [-2.5, -4.0]


def test_generation_settings_and_stop_strings():
    from cai.chat import Sampling
    from cai.models.backends.hf import batch_key, cut_at_stop, generate_kwargs

    assert generate_kwargs(Sampling(temperature=0, max_tokens=7)) == {
        "max_new_tokens": 7, "do_sample": False}
    assert generate_kwargs(Sampling(temperature=0.6, top_p=0.9, repeat_penalty=1.2)) == {
        "max_new_tokens": 256, "do_sample": True, "temperature": 0.6, "top_p": 0.9, "top_k": 0,
        "repetition_penalty": 1.2}
    assert cut_at_stop("one. two. three", (" two", ".")) == ("one", True)
    assert cut_at_stop("one", ("x", "")) == ("one", False)
    assert batch_key(Sampling(seed=1, stop=("a",))) == batch_key(Sampling(seed=2))


def test_cli_errors_are_one_line(tmp_path):
    result = cai("train", "sft", "--data", tmp_path / "missing.jsonl", "--out", tmp_path / "o",
                 timeout=60)
    assert result.returncode == 2 and "missing.jsonl: file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_cai_help_does_not_import_torch():
    code = ("import sys; from click.testing import CliRunner; from cai.cli import cli; "
            "r = CliRunner().invoke(cli, ['train', 'dpo', '--help']); "
            "assert r.exit_code == 0, r.output; assert '--min-margin' in r.output; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------- with the embedded model


@pytest.fixture(scope="session")
def start(local_model: Path) -> Path:
    """The embedded model as a transformers checkpoint, converted once a session (conftest)."""
    import torch

    # Matrices this small gain little from a second thread, and lose a lot when other work
    # shares the CPU (threads spin waiting for each other).
    torch.set_num_threads(1)
    return local_model


def moved_callback():
    """A callback that records which trainable parameters did not change during training."""
    from transformers import TrainerCallback

    class Moved(TrainerCallback):
        unchanged: list[str] | None = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.before = {n: p.detach().clone() for n, p in model.named_parameters()
                           if p.requires_grad}

        def on_train_end(self, args, state, control, model=None, **kwargs):
            params = dict(model.named_parameters())
            self.unchanged = [n for n, p in self.before.items() if p.equal(params[n])]

    return Moved()


@pytest.fixture
def moved():
    return moved_callback()


def generate(spec: str, prompt: str = "Name a colour.") -> list:
    from cai.chat import Message, Sampling
    from cai.models.client import Client
    from cai.models.registry import load_backend

    client = Client(load_backend(spec), concurrency=2)

    async def go():
        try:
            sampling = Sampling(temperature=0, max_tokens=6)
            return await asyncio.gather(*(client.complete([Message("user", p)], sampling)
                                          for p in (prompt, "Say hello.")))
        finally:
            await client.aclose()

    return asyncio.run(go())


def check_run(summary: dict, moved, out: Path) -> None:
    assert summary["steps"] == 2 and len(summary["losses"]) == 2
    assert all(math.isfinite(x["loss"]) for x in summary["losses"])
    assert moved.unchanged == [], f"parameters that did not move: {moved.unchanged[:5]}"
    saved = json.loads((out / "train_summary.json").read_text())
    assert saved["losses"] == summary["losses"]
    card = (out / "README.md").read_text()
    assert CONSTITUTION["sha256"] in card and "dequantized 4-bit" in " ".join(card.split())
    assert all(a.text and a.usage.completion_tokens > 0 for a in generate(f"hf:{out}"))


@pytest.fixture(scope="module")
def sft_adapter(start, tmp_path_factory) -> tuple[Path, dict, object]:
    """A LoRA adapter trained by SFT, which the DPO test then starts from."""
    from cai.chat import Sampling
    from cai.training.sft import SFT
    from cai.training.train import train

    tmp = tmp_path_factory.mktemp("sft")
    data = write_jsonl(tmp / "sft.jsonl", sft_rows(12))
    (tmp / "train.yaml").write_text(TWO_STEPS)
    moved = moved_callback()
    summary = train(SFT(), [data], "local", tmp / "sft", lora=True, config=tmp / "train.yaml",
                    callbacks=[moved], answer_sampling=Sampling(temperature=0, max_tokens=6))
    return tmp / "sft", summary, moved


@needs_train
@pytest.mark.slow
def test_sft_lora_learns_only_the_answer(sft_adapter):
    out, summary, moved = sft_adapter
    check_run(summary, moved, out)
    # SmolLM2's chat template adds its own system prompt; the loss sees only the answer.
    example = summary["example"]
    assert "You are a helpful AI assistant named SmolLM" in example["prompt"]
    assert example["prompt"].endswith("<|im_start|>assistant\n")
    assert example["trained_on"] == "A short, kind answer 0.<|im_end|>\n"
    assert (out / "adapter_config.json").exists() and (out / "chat_template.jinja").exists()
    # The held-out prompt was not trained on, and the trained model answered it.
    held = read_jsonl(out / "heldout.jsonl")
    answers = read_jsonl(out / "heldout_answers.jsonl")
    assert len(held) == 1 and summary["train_rows"] == 11 and summary["notes"] == []
    assert [a["prompt"] for a in answers] == [h["prompt"] for h in held]
    assert answers[0]["sampling"]["max_tokens"] == 6 and "eval_loss" in summary["heldout"]


@needs_train
@pytest.mark.slow
def test_sft_full_few_rows_has_no_split(start, moved, tmp_path):
    from cai.training.sft import SFT
    from cai.training.train import train

    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(4))
    (tmp_path / "train.yaml").write_text(TWO_STEPS)
    out = tmp_path / "sft-full"
    summary = train(SFT(), [data], "local", out, config=tmp_path / "train.yaml",
                    callbacks=[moved])
    check_run(summary, moved, out)
    assert summary["trainable_parameters"] == summary["parameters"]
    assert summary["heldout_rows"] == 0 and "no held-out split" in summary["notes"][0]
    assert read_jsonl(out / "heldout.jsonl") == []
    assert not (out / "heldout_answers.jsonl").exists()


@needs_train
@pytest.mark.slow
def test_dpo_lora_on_the_sft_adapter_merged(sft_adapter, start, moved, tmp_path):
    from cai.chat import Sampling
    from cai.training.dpo import DPO
    from cai.training.train import train

    sft, _, _ = sft_adapter
    data = write_jsonl(tmp_path / "prefs.jsonl",
                       pref_rows(12) + [{**pref_rows(1)[0], "margin": 0.05}])
    (tmp_path / "train.yaml").write_text(TWO_STEPS + "  beta: 0.2\n  ld_alpha: 0.5\n")
    out = tmp_path / "dpo"
    summary = train(DPO(min_margin=0.1), [data], f"hf:{sft}", out, lora=True, merge=True,
                    config=tmp_path / "train.yaml", callbacks=[moved],
                    answer_sampling=Sampling(temperature=0, max_tokens=6))
    check_run(summary, moved, out)
    assert summary["dropped_low_margin"] == 1 and summary["rows"] == 12
    assert 0.0 <= summary["implicit_reward_accuracy"] <= 1.0
    assert summary["example"]["chosen"] == "Happy to help: answer 0.<|im_end|>\n"
    # --merge folds both adapters (SFT's, then DPO's) into a plain model that stands alone.
    assert (out / "config.json").exists() and not (out / "adapter_config.json").exists()
    assert summary["start"] == str(sft) and summary["from_embedded"]
    assert len(read_jsonl(out / "heldout_answers.jsonl")) == 1


def dpo_trainer(start: Path, rows: list[dict], lora: bool, tmp_path: Path):
    from cai.models.checkpoints import load_policy, load_tokenizer
    from cai.training.config import TrainConfig, lora_config, trl_args
    from cai.training.data import Split
    from cai.training.dpo import DPO
    from cai.training.train import make_trainer

    config = TrainConfig(trl={"max_steps": 2, "per_device_train_batch_size": 2,
                              "max_length": 96})
    args, _ = trl_args(DPO(), tmp_path / "out", lora, config)
    peft = lora_config(True, config)[0] if lora else None
    return make_trainer(DPO(), load_policy(start, lora), load_tokenizer(start),
                        Split(rows, []), args, peft)


@needs_train
@pytest.mark.slow
def test_soft_labels_change_the_dpo_loss_and_p1_is_trl_dpo(start, tmp_path):
    import torch
    from trl import DPOTrainer

    trainer = dpo_trainer(start, pref_rows(2), True, tmp_path)
    model = trainer.model
    with torch.no_grad():  # an untrained adapter gives zero margins: give them some
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    model.eval()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))

    def loss(labels: list[float] | None) -> float:
        inputs = dict(batch)
        with torch.no_grad():
            if labels is None:  # TRL's own sigmoid loss on the same batch
                inputs.pop("soft_label")
                return DPOTrainer._compute_loss(trainer, model, inputs, False).item()
            inputs["soft_label"] = torch.tensor(labels)
            return trainer.compute_loss(model, inputs).item()

    certain, unsure, half = loss([1.0, 1.0]), loss([0.6, 0.6]), loss([0.5, 0.5])
    assert certain == pytest.approx(loss(None), rel=1e-5)
    assert len({round(certain, 6), round(unsure, 6), round(half, 6)}) == 3


@needs_train
@pytest.mark.slow
def test_dpo_full_reference_is_a_frozen_copy(start, moved, tmp_path):
    trainer = dpo_trainer(start, pref_rows(4, label=None), False, tmp_path)
    ref, policy = trainer.ref_model, trainer.model
    assert ref is not None and ref is not policy
    assert not any(p.requires_grad for p in ref.parameters())
    before = {n: p.clone() for n, p in ref.named_parameters()}
    trainer.add_callback(moved)
    trainer.train()
    assert moved.unchanged == []
    assert all(p.equal(before[n]) for n, p in ref.named_parameters())
    assert [e["loss"] for e in trainer.state.log_history if "loss" in e][0] == \
        pytest.approx(math.log(2), rel=1e-4)  # the policy starts equal to its reference


@needs_train
@pytest.mark.slow
def test_reward_model_trains_and_is_not_a_generator(start, moved, tmp_path):
    from cai.models.registry import load_backend
    from cai.training.reward import RewardModel
    from cai.training.train import train

    data = write_jsonl(tmp_path / "prefs.jsonl", pref_rows(4))
    (tmp_path / "train.yaml").write_text(TWO_STEPS)
    out = tmp_path / "rm"
    summary = train(RewardModel(), [data], "local", out, lora=True,
                    config=tmp_path / "train.yaml", callbacks=[moved])
    assert summary["steps"] == 2 and moved.unchanged == []
    with pytest.raises(CaiError, match="reward model"):
        backend = load_backend(f"hf:{out}")
        backend.load()


@needs_train
@pytest.mark.slow
def test_local_checkpoint_is_plain_and_says_what_it_is(start):
    config = json.loads((start / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    assert "dequantized 4-bit weights" in " ".join((start / "README.md").read_text().split())
    assert not [p for p in start.parent.iterdir() if p.name.startswith(f".{start.name}.")]


@needs_train
@pytest.mark.slow
def test_hf_backend_batches_concurrent_requests(start):
    from cai.chat import Message, Sampling
    from cai.models.backends.hf import HFBackend

    backend = HFBackend("local")
    sizes = []
    generate_batch = backend._generate

    def spy(batch):
        sizes.append(len(batch))
        return generate_batch(batch)

    backend._generate = spy

    async def go():
        try:
            return await asyncio.gather(*(backend.complete(
                [Message("user", q)], Sampling(temperature=0, max_tokens=5, seed=i,
                                               stop=(" ",) if i == 0 else ()))
                for i, q in enumerate(QUESTIONS[:3])))
        finally:
            await backend.aclose()

    answers = asyncio.run(go())
    assert sizes == [3]
    assert all(a.model == "SmolLM2-135M-Instruct" and a.usage.prompt_tokens > 20
               for a in answers)
    assert " " not in answers[0].text and answers[0].finish_reason == "stop"
    assert answers[1].finish_reason == "length" and answers[1].usage.completion_tokens == 5


@needs_train
@pytest.mark.slow
def test_hf_backend_scores_the_options_it_is_given(start):
    """The judge's constrained answer on `hf:`: A and B scored as the reply's first token."""
    from cai.chat import Message, Sampling
    from cai.models.backends.hf import HFBackend

    backend = HFBackend("local")
    question = [Message("user", "Which letter comes first in the alphabet? Answer A or B.")]
    prompts = [question, [Message("user", "Pick one: A or B.")]]

    async def go():
        try:
            return await asyncio.gather(*(backend.complete(
                p, Sampling(temperature=0, max_tokens=1, choices=("A", "B"))) for p in prompts))
        finally:
            await backend.aclose()

    for answer in asyncio.run(go()):
        assert answer.text in ("A", "B") and answer.usage.completion_tokens == 1
        [token] = answer.logprobs
        assert set(token.top) == {"A", "B"} and token.token == answer.text
        assert token.top[answer.text] == max(token.top.values()) < 0


@needs_train
def test_shipped_training_configs_fit_trl(tmp_path):
    """Every `examples/train-*.yaml` names only fields TRL has; the GPU one asks for
    liger-kernel, which is refused by name and line where it is not installed."""
    import importlib.util

    from cai.training.config import read_config, trl_args
    from cai.training.dpo import DPO
    from cai.training.sft import SFT

    for path in sorted(Path("examples").glob("train-*.yaml")):
        method = DPO() if "dpo" in path.name else SFT()
        config = read_config(path)
        if config.trl.get("use_liger_kernel") and not importlib.util.find_spec("liger_kernel"):
            with pytest.raises(InputError) as e:
                trl_args(method, tmp_path, False, config)
            line = config.lines["trl", "use_liger_kernel"]
            assert f"{path}:{line}:" in str(e.value) and "cai-toolkit[gpu]" in str(e.value)
        else:
            trl_args(method, tmp_path, False, config)


@needs_train
def test_gpu_benchmark_runs_in_smoke_mode(tmp_path):
    """`benchmarks/gpu_train.py --smoke`: both profiles, all three phases, on a tiny model on
    the CPU, so that the script a lent GPU runs is known to work before it gets there."""
    out = tmp_path / "gpu.json"
    subprocess.run([sys.executable, "-m", "benchmarks.gpu_train", "--smoke", "--out", str(out)],
                   check=True, capture_output=True, timeout=600)
    result = json.loads(out.read_text())
    profiles = result["profiles"]
    assert set(profiles) == {"before", "after"}
    for phases in profiles.values():
        assert set(phases) == {"sft", "dpo", "grpo"}
        assert not [k for k, figures in phases.items() if "error" in figures], phases
        for kind in ("sft", "dpo"):
            assert phases[kind]["tokens_per_s"] > 0 and phases[kind]["timed_steps"] >= 1
        grpo = phases["grpo"]
        assert grpo["generation_tokens_per_s"] > 0 and grpo["training_tokens_per_s"] > 0
        assert 0 < grpo["seconds_generating"] < grpo["seconds_timed"]
    assert profiles["after"]["sft"]["batch"] == 2 * profiles["before"]["sft"]["batch"]
    assert profiles["after"]["sft"]["settings"]["gradient_checkpointing"] is False
    assert "need a GPU" in profiles["after"]["dpo"]["note"]  # liger-kernel left out, said why


@needs_train
def test_gpu_benchmark_records_a_failed_phase_and_goes_on(tmp_path):
    out = tmp_path / "gpu.json"
    subprocess.run([sys.executable, "-m", "benchmarks.gpu_train", "--smoke", "--out", str(out),
                    "--phases", "rlhf,sft", "--profiles", "before"],
                   check=True, capture_output=True, timeout=600)
    phases = json.loads(out.read_text())["profiles"]["before"]
    assert phases["rlhf"] == {"error": "KeyError: 'rlhf'"}
    assert phases["sft"]["tokens_per_s"] > 0
