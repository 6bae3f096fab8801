"""Training throughput on a GPU: SFT, DPO and GRPO through cai's trainers, in bf16, under
two profiles measured side by side in one run.

- `before`: cai's GPU defaults (bf16 autocast over float32 weights, gradient checkpointing).
- `after`: gradient checkpointing off, liger-kernel's fused kernels where liger_kernel is
  installed (`pip install 'cai-toolkit[gpu]'`), and twice the batch.

The model is Llama-shaped, about 1.1B parameters, randomly initialised, so no weights are
needed; the data is random words of fixed lengths from a word-level tokenizer made here, so
every sequence has exactly the tokens asked for and none is padding. DPO is a full fine-tune
against a frozen copy, with the soft-label loss. GRPO samples with transformers' `generate`
(vLLM cannot be installed for the GPU here) and is rewarded by a plain length function, so
that its figures are the trainer's and not a judge's; it reports generation and training
tokens per second apart.

    python -m benchmarks.gpu_train            # from the repository root, on a GPU
    python -m benchmarks.gpu_train --smoke    # a tiny model on the CPU: checks the script

Model FLOPs utilisation counts 6 N FLOPs per trained token (forward and backward), plus 2 N
per token for DPO's reference forward, with N the parameters less the input embedding (a
lookup); attention's own FLOPs and gradient checkpointing's recomputation are not counted.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import random
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing to download
ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "benchmarks" / "results"
# Dense bf16 FLOP/s: the H100 SXM and the H200 share the H100's compute (the H200 has more and
# faster memory), so one peak serves both.
BF16_DENSE = 989e12
SPECIAL = ["<unk>", "<pad>", "</s>"]

SIZES = {  # model shape, sequence lengths, batch and steps per phase
    "gpu": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
            "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 32000,
            "prompt": 512, "completion": 512, "batch": 16, "dpo_batch": 8, "steps": 40,
            "warmup": 5, "grpo_prompt": 128, "grpo_completion": 256, "grpo_batch": 16,
            "grpo_generations": 8, "grpo_steps": 8, "grpo_warmup": 2},
    "smoke": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 512,
              "prompt": 16, "completion": 16, "batch": 2, "dpo_batch": 2, "steps": 4,
              "warmup": 1, "grpo_prompt": 8, "grpo_completion": 8, "grpo_batch": 4,
              "grpo_generations": 2, "grpo_steps": 4, "grpo_warmup": 1},
}
# What each profile changes over cai's defaults: TRL settings, and a factor on every batch.
PROFILES: dict[str, dict[str, Any]] = {
    "before": {"trl": {}, "batch_scale": 1},
    "after": {"trl": {"gradient_checkpointing": False, "use_liger_kernel": True},
              "batch_scale": 2},
}


def word_tokenizer(vocab_size: int) -> Any:
    """One token per word w0, w1, ...: exact, known sequence lengths."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL)}
    vocab.update({f"w{i}": i for i in range(len(SPECIAL), vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="</s>")


def words(rng: random.Random, n: int, vocab_size: int) -> str:
    # A leading space, since TRL joins prompt and completion as strings.
    return "".join(f" w{rng.randrange(len(SPECIAL), vocab_size)}" for _ in range(n))


def synthetic_rows(kind: str, n: int, size: dict[str, int], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    v = size["vocab_size"]
    if kind == "grpo":  # the policy writes the completions
        return [{"id": f"p{i}", "prompt": words(rng, size["grpo_prompt"], v)} for i in range(n)]
    if kind == "sft":
        return [{"prompt": words(rng, size["prompt"], v),
                 "completion": words(rng, size["completion"], v)} for _ in range(n)]
    return [{"prompt": words(rng, size["prompt"], v), "chosen": words(rng, size["completion"], v),
             "rejected": words(rng, size["completion"], v),
             "soft_label": rng.uniform(0.6, 1.0)} for _ in range(n)]


def step_timer(warmup: int) -> Any:
    """A callback that times each optimizer step once the GPU has finished it."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

        def seconds(self) -> tuple[int, float]:
            """Steps timed and their seconds, after the first `warmup` steps."""
            timed = self.times[warmup:]
            return len(timed) - 1, timed[-1] - timed[0]

    return StepTimer()


def profile_settings(name: str) -> tuple[dict[str, Any], str | None]:
    """The profile's TRL settings, less the fused kernels where they cannot run, and why."""
    import importlib.util

    import torch

    settings = dict(PROFILES[name]["trl"])
    if not settings.get("use_liger_kernel"):
        return settings, None
    why = None
    if not torch.cuda.is_available():
        why = "liger-kernel not applied: its Triton kernels need a GPU"
    elif importlib.util.find_spec("liger_kernel") is None:
        why = "liger-kernel not applied: not installed (pip install 'cai-toolkit[gpu]')"
    if why:
        settings.pop("use_liger_kernel")
    return settings, why


def train_phase(kind: str, model: Any, tokenizer: Any, size: dict[str, int], out: Path,
                profile: str, extra: dict[str, Any] | None = None) -> tuple[Any, Any, dict]:
    """Train one phase under a profile; the trainer, its step timer and the batch settings."""
    from cai.training.config import TrainConfig, trl_args
    from cai.training.data import Split
    from cai.training.train import make_trainer

    settings, note = profile_settings(profile)
    scale = PROFILES[profile]["batch_scale"]
    key = {"sft": "batch", "dpo": "dpo_batch", "grpo": "grpo_batch"}[kind]
    method = methods()[kind]
    steps = size["grpo_steps" if kind == "grpo" else "steps"]
    batch = size[key] * scale
    config = TrainConfig(trl={"max_steps": steps, "per_device_train_batch_size": batch,
                              "disable_tqdm": True, **settings, **(extra or {})})
    args, trl_settings = trl_args(method, out / f"{profile}-{kind}", False, config)
    rows = synthetic_rows(kind, batch * steps, size, seed=len(kind))
    timer = step_timer(size["grpo_warmup" if kind == "grpo" else "warmup"])
    trainer = make_trainer(method, model, tokenizer, Split(rows, []), args, None, [timer])
    info = {"batch": batch, "steps": steps, "note": note,
            "settings": {k: v for k, v in trl_settings.items() if k != "output_dir"}}
    return trainer, timer, info


def length_reward(completions: list[str], **_: Any) -> list[float]:
    """GRPO's reward here: cheap and varied, so that the figures are the trainer's own."""
    return [float(len(c)) for c in completions]


def methods() -> dict[str, Any]:
    """cai's methods as `cai train` runs them; GRPO's reward is `length_reward`, not a judge."""
    from cai.training.dpo import DPO
    from cai.training.grpo import GRPO, RewardSettings
    from cai.training.sft import SFT

    class LengthRewardGRPO(GRPO):
        def judge_reward(self, args: Any) -> Any:
            return length_reward

    return {"sft": SFT(), "dpo": DPO(),
            "grpo": LengthRewardGRPO(RewardSettings(), session=None, templates=None, prompts=[])}


def memory_and_losses(trainer: Any, started: float) -> dict[str, Any]:
    import torch

    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if torch.cuda.is_available() else None,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
    }


def run_phase(kind: str, model: Any, tokenizer: Any, size: dict[str, int], out: Path,
              peak: float, flops_params: int, profile: str) -> dict[str, Any]:
    """SFT or DPO: tokens per second and MFU over the timed steps."""
    trainer, timer, info = train_phase(kind, model, tokenizer, size, out, profile,
                                       {"max_length": None})
    first = trainer.train_dataset[0]
    # Tokens one sequence of a step holds: SFT one, DPO a chosen and a rejected sequence.
    per_row = (len(first["input_ids"]) if kind == "sft" else 2 * len(first["prompt_ids"])
               + len(first["chosen_ids"]) + len(first["rejected_ids"]))
    started = reset_memory()
    trainer.train()
    steps, seconds = timer.seconds()
    batch = info["batch"]
    tokens = steps * batch * per_row * trainer.accelerator.num_processes
    flops_per_token = 6 * flops_params + (2 * flops_params if kind == "dpo" else 0)
    tokens_per_s = tokens / seconds
    result = {
        "timed_steps": steps, **info,
        "tokens_per_sequence": per_row if kind == "sft" else per_row // 2,
        "tokens_per_step": batch * per_row, "seconds_timed": round(seconds, 3),
        "seconds_per_step": round(seconds / steps, 4), "tokens_per_s": round(tokens_per_s, 1),
        "flops_per_token": flops_per_token,
        "mfu": round(flops_per_token * tokens_per_s / peak, 4),
        **memory_and_losses(trainer, started),
    }
    release(trainer)
    return result


def run_grpo(model: Any, tokenizer: Any, size: dict[str, int], out: Path, peak: float,
             flops_params: int, profile: str) -> dict[str, Any]:
    """GRPO: tokens per second of generation and of training apart, over the timed steps.

    Generation is timed around the trainer's `_generate`; the rest of a step (the reward, the
    forward and backward over prompt and completion) is training."""
    import torch

    g = size["grpo_generations"]
    trainer, timer, info = train_phase(
        "grpo", model, tokenizer, size, out, profile,
        {"num_generations": g, "max_completion_length": size["grpo_completion"],
         "logging_steps": 1})
    spans: list[tuple[float, float]] = []
    generate = trainer._generate

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        result = generate(*args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        spans.append((began, time.perf_counter()))
        return result

    trainer._generate = timed
    started = reset_memory()
    trainer.train()
    steps, seconds = timer.seconds()
    first = timer.times[-steps - 1]  # the end of the last untimed step
    generating = sum(end - began for began, end in spans if began >= first)
    lengths = [e["completions/mean_length"] for e in trainer.state.log_history
               if "completions/mean_length" in e][-steps:]
    batch = info["batch"]
    generated = sum(lengths) * batch
    trained = steps * batch * size["grpo_prompt"] + generated
    training = seconds - generating
    result = {
        "timed_steps": steps, **info, "num_generations": g,
        "prompt_tokens": size["grpo_prompt"], "max_completion_tokens": size["grpo_completion"],
        "mean_completion_tokens": round(sum(lengths) / len(lengths), 1),
        "seconds_timed": round(seconds, 3), "seconds_generating": round(generating, 3),
        "generation_tokens_per_s": round(generated / generating, 1),
        "training_tokens_per_s": round(trained / training, 1),
        "training_mfu": round(6 * flops_params * trained / training / peak, 4),
        **memory_and_losses(trainer, started),
    }
    release(trainer)
    return result


def reset_memory() -> float:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    return time.perf_counter()


def release(trainer: Any) -> None:
    import torch

    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, a few steps (CPU)")
    parser.add_argument("--peak-tflops", type=float, default=BF16_DENSE / 1e12,
                        help="the GPU's dense bf16 peak, TFLOP/s [default: H100 SXM / H200]")
    parser.add_argument("--profiles", default="before,after",
                        help=f"comma-separated, of {', '.join(PROFILES)} [default: both]")
    parser.add_argument("--phases", default="sft,dpo,grpo", help="comma-separated phases")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file [default: benchmarks/results/gpu_train-<gpu>.json; "
                        "none with --smoke]")
    a = parser.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if not a.smoke and not torch.cuda.is_available():
        sys.exit("no GPU here; run with --smoke to check the script on the CPU")
    size = dict(SIZES["smoke" if a.smoke else "gpu"])
    started = time.perf_counter()
    shape = {k: size[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                  "num_key_value_heads", "intermediate_size", "vocab_size")}
    config = LlamaConfig(**shape, max_position_embeddings=4096, tie_word_embeddings=False,
                         bos_token_id=None, eos_token_id=2, pad_token_id=1)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def new_model() -> Any:
        # A fresh model per phase, as each `cai train` run loads one: a model a trainer has
        # been through carries its hooks. float32 weights; bf16 autocast does the matmuls.
        torch.manual_seed(0)
        with torch.device(device):
            return LlamaForCausalLM(config)

    model = new_model()
    params = sum(p.numel() for p in model.parameters())
    flops_params = params - model.get_input_embeddings().weight.numel()
    print(f"model: {params / 1e9:.3f}B parameters ({flops_params / 1e9:.3f}B in matmuls)",
          flush=True)
    del model
    tokenizer = word_tokenizer(size["vocab_size"])
    peak = a.peak_tflops * 1e12
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    out = a.out or (None if a.smoke else RESULTS / f"gpu_train-{slug(gpu)}.json")
    result = {
        "device": gpu, "smoke": a.smoke, "peak_tflops": a.peak_tflops, "parameters": params,
        "flops_parameters": flops_params, "model": shape, "profiles": {},
        "versions": {p: version(p) for p in ("torch", "transformers", "trl", "liger_kernel")},
        "date": time.strftime("%Y-%m-%d"), "wall_seconds": None,
    }
    with tempfile.TemporaryDirectory() as scratch:  # TRL wants an output_dir; nothing is kept
        # Phase by phase, the profiles back to back: their ratio is measured under one load.
        for kind in a.phases.split(","):
            for name in a.profiles.split(","):
                print(f"{name} {kind} ...", flush=True)
                run = run_grpo if kind == "grpo" else functools.partial(run_phase, kind)
                result["profiles"].setdefault(name, {})[kind] = guarded(
                    run, new_model(), tokenizer, size, Path(scratch), peak, flops_params, name)
                result["wall_seconds"] = round(time.perf_counter() - started, 1)
                if out is not None:  # after every phase: a GPU lent for minutes may go first
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    if out is not None:
        print(f"-> {out}")


def guarded(run: Any, *args: Any) -> dict[str, Any]:
    """A phase's figures, or the error that stopped it (out of memory, a kernel): the other
    phases and profiles still run."""
    import torch

    try:
        return run(*args)
    except Exception as e:
        error = f"{type(e).__name__}: {e}"[:2000]
        print(f"failed: {error}", flush=True)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"error": error}


def slug(gpu: str) -> str:
    """`NVIDIA H200` -> `h200`: the model's name, for the results file."""
    names = [w for w in gpu.lower().split() if w[:1].isalpha() and any(c.isdigit() for c in w)]
    return names[0] if names else "gpu"


def version(package: str) -> str | None:
    try:
        return metadata.version(package.replace("_", "-"))
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
