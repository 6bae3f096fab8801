"""Training throughput on a GPU: SFT, then DPO, through cai's trainers, in bf16.

The model is Llama-shaped, about 1.1B parameters, randomly initialised, so no weights are
needed; the data is random words of fixed lengths from a word-level tokenizer made here, so
every sequence has exactly the tokens asked for and none is padding. The settings are cai's
own GPU defaults (bf16 autocast over float32 weights, gradient checkpointing); DPO is a full
fine-tune against a frozen copy, with the soft-label loss.

    python -m benchmarks.gpu_train            # from the repository root; ~3 minutes on an H100
    python -m benchmarks.gpu_train --smoke    # a tiny model on the CPU: checks the script

Model FLOPs utilisation counts 6 N FLOPs per trained token (forward and backward), plus 2 N
per token for DPO's reference forward, with N the parameters less the input embedding (a
lookup); attention's own FLOPs and gradient checkpointing's recomputation are not counted.
"""

from __future__ import annotations

import argparse
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

RESULTS = ROOT / "benchmarks" / "results" / "gpu_train.json"
H100_BF16_DENSE = 989e12  # H100 SXM, dense bf16 FLOP/s
SPECIAL = ["<unk>", "<pad>", "</s>"]

SIZES = {  # model shape, sequence lengths, batch and steps per phase
    "gpu": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
            "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 32000,
            "prompt": 512, "completion": 512, "batch": 16, "dpo_batch": 8, "steps": 40,
            "warmup": 5},
    "smoke": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 512,
              "prompt": 16, "completion": 16, "batch": 2, "dpo_batch": 2, "steps": 4,
              "warmup": 1},
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


def run_phase(kind: str, model: Any, tokenizer: Any, size: dict[str, int], out: Path,
              peak: float, flops_params: int) -> dict[str, Any]:
    import torch

    from cai.training.train import Split, TrainConfig, make_trainer, trl_args

    batch = size["batch"] if kind == "sft" else size["dpo_batch"]
    config = TrainConfig(trl={"max_steps": size["steps"], "per_device_train_batch_size": batch,
                              "max_length": None, "disable_tqdm": True})
    args, settings = trl_args(kind, out / kind, False, config)
    rows = synthetic_rows(kind, batch * size["steps"], size, seed=len(kind))
    timer = step_timer(size["warmup"])
    trainer = make_trainer(kind, model, tokenizer, Split(rows, []), args, None, [timer])
    first = trainer.train_dataset[0]
    # Tokens one sequence of a step holds: SFT one, DPO a chosen and a rejected sequence.
    per_row = (len(first["input_ids"]) if kind == "sft" else 2 * len(first["prompt_ids"])
               + len(first["chosen_ids"]) + len(first["rejected_ids"]))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.train()
    steps, seconds = timer.seconds()
    tokens = steps * batch * per_row * trainer.accelerator.num_processes
    flops_per_token = 6 * flops_params + (2 * flops_params if kind == "dpo" else 0)
    tokens_per_s = tokens / seconds
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    result = {
        "steps": size["steps"], "timed_steps": steps, "batch": batch,
        "tokens_per_sequence": per_row if kind == "sft" else per_row // 2,
        "tokens_per_step": batch * per_row, "seconds_timed": round(seconds, 3),
        "seconds_per_step": round(seconds / steps, 4), "tokens_per_s": round(tokens_per_s, 1),
        "flops_per_token": flops_per_token,
        "mfu": round(flops_per_token * tokens_per_s / peak, 4),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if torch.cuda.is_available() else None,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "settings": {k: v for k, v in settings.items() if k != "output_dir"},
    }
    del trainer, model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, a few steps (CPU)")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE / 1e12,
                        help="the GPU's dense bf16 peak, TFLOP/s [default: H100 SXM]")
    parser.add_argument("--steps", type=int, default=None, help="steps per phase")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results file [default: {RESULTS.relative_to(ROOT)}; none with "
                        "--smoke]")
    a = parser.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if not a.smoke and not torch.cuda.is_available():
        sys.exit("no GPU here; run with --smoke to check the script on the CPU")
    size = dict(SIZES["smoke" if a.smoke else "gpu"])
    size["steps"] = a.steps or size["steps"]
    started = time.perf_counter()
    shape = {k: size[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                  "num_key_value_heads", "intermediate_size", "vocab_size")}
    config = LlamaConfig(**shape, max_position_embeddings=4096, tie_word_embeddings=False)
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
    with tempfile.TemporaryDirectory() as scratch:  # TRL wants an output_dir; nothing is kept
        phases = {kind: run_phase(kind, new_model(), tokenizer, size, Path(scratch), peak,
                                  flops_params) for kind in ("sft", "dpo")}
    result = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "smoke": a.smoke, "peak_tflops": a.peak_tflops, "parameters": params,
        "flops_parameters": flops_params, "model": shape, "phases": phases,
        "versions": {p: metadata.version(p) for p in ("torch", "transformers", "trl")},
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    out = a.out or (None if a.smoke else RESULTS)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
        print(f"-> {out}")


if __name__ == "__main__":
    main()
