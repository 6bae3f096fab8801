"""Training with TRL on cai's data: SFT on revisions, DPO on judged pairs, reward models.

A run reads records in TRL's formats (provenance beside them), splits held-out prompts off,
trains with SFTTrainer, DPOTrainer or RewardTrainer, and leaves in `--out` itself the model or
LoRA adapter, tokenizer and chat template, a model card (README.md), train_summary.json,
heldout.jsonl and the trained model's heldout_answers.jsonl.

The `trl:` mapping of a config YAML goes straight into SFTConfig / DPOConfig / RewardConfig,
over the few defaults below; `lora:` goes into peft's LoraConfig. Nothing assumes one process:
under `accelerate launch` every rank trains and only the main one writes the extra files.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cai import checkpoints
from cai.backends.local import LOCAL_SAMPLING
from cai.chat import Sampling
from cai.errors import CaiError, InputError
from cai.records import read_jsonl, write_json

COLUMNS = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected"),
           "reward": ("prompt", "chosen", "rejected")}
MIN_SPLIT_PROMPTS = 10  # below this a held-out split leaves too little to learn from or judge by
LEARNING_RATES = {("sft", False): 2e-5, ("sft", True): 2e-4, ("dpo", False): 1e-6,
                  ("dpo", True): 1e-5, ("reward", False): 1e-5, ("reward", True): 1e-4}
LORA_DEFAULTS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
SECTIONS = {"trl": "TRL's config for the command", "lora": "peft's LoraConfig"}


# ---------------------------------------------------------------- the config file


@dataclass(frozen=True)
class TrainConfig:
    """The `trl:` and `lora:` mappings of a training config file, and where each key is."""

    trl: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    def check(self, section: str, known: set[str], target: str) -> None:
        """Reject a key `target` does not take, naming the file, line and key."""
        for key in getattr(self, section):
            if key not in known:
                raise InputError(self.path or "config", self.lines.get((section, key)),
                                 f"{section}: unknown key '{key}': {target} has no such field")


def read_config(path: Path | None) -> TrainConfig:
    if path is None:
        return TrainConfig()
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
    except FileNotFoundError:
        raise InputError(path, None, "config file not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(path, mark.line + 1 if mark else None, f"not valid YAML: {e}") from None
    lines = key_lines(text)
    if not isinstance(data, dict):
        raise InputError(path, None, "expected a mapping with `trl:` and `lora:`")
    for key, value in data.items():
        if key not in SECTIONS:
            known = "; ".join(f"`{k}:` ({v})" for k, v in SECTIONS.items())
            raise InputError(path, lines.get((key,)), f"unknown key '{key}'; use {known}")
        if not isinstance(value, dict):
            raise InputError(path, lines.get((key,)), f"`{key}:` must be a mapping of settings")
    return TrainConfig(dict(data.get("trl") or {}), dict(data.get("lora") or {}), path, lines)


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The line of each key in the top two levels of a YAML mapping."""
    root = yaml.compose(text)
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            lines[(key.value,)] = key.start_mark.line + 1
            if isinstance(value, yaml.MappingNode):
                for sub, _ in value.value:
                    lines[(key.value, sub.value)] = sub.start_mark.line + 1
    return lines


def default_settings(kind: str, out: Path, lora: bool, gpu: bool) -> dict[str, Any]:
    """What cai sets in TRL's config before the user's `trl:` mapping."""
    return {
        "output_dir": str(out), "report_to": "none", "seed": 0, "logging_steps": 1,
        "save_strategy": "no",  # the result is saved once, into --out itself
        "learning_rate": LEARNING_RATES[kind, lora],
        # TRL's configs default to bf16 and gradient checkpointing, which a CPU refuses or
        # does not need; on a GPU bf16 autocast runs the matmuls over float32 master weights.
        "bf16": gpu, "fp16": False, "gradient_checkpointing": gpu, "dataloader_pin_memory": gpu,
        "prediction_loss_only": True,  # held-out evaluation wants the loss and metrics only
    }


def trl_args(kind: str, out: Path, lora: bool, config: TrainConfig) -> tuple[Any, dict]:
    """TRL's config for `kind`: our defaults, then the file's `trl:` mapping as it stands."""
    import torch
    from trl import DPOConfig, RewardConfig, SFTConfig

    cls = {"sft": SFTConfig, "dpo": DPOConfig, "reward": RewardConfig}[kind]
    config.check("trl", {f.name for f in dataclasses.fields(cls)}, cls.__name__)
    if "output_dir" in config.trl:  # the model, card and summary must land in one folder
        raise InputError(config.path or "config", config.lines.get(("trl", "output_dir")),
                         "trl: output_dir is set by --out; remove it here")
    settings = {**default_settings(kind, out, lora, torch.cuda.is_available()), **config.trl}
    try:
        return cls(**settings), settings
    except (TypeError, ValueError) as e:
        raise InputError(config.path or "config", None, f"trl: {e}") from None


def lora_config(kind: str, config: TrainConfig) -> tuple[Any, dict]:
    from peft import LoraConfig

    config.check("lora", {f.name for f in dataclasses.fields(LoraConfig)}, "LoraConfig")
    # A reward model's score head is new, so SEQ_CLS trains it in full beside the adapters.
    task = "SEQ_CLS" if kind == "reward" else "CAUSAL_LM"
    settings = {**LORA_DEFAULTS, "task_type": task, **config.lora}
    try:
        return LoraConfig(**settings), settings
    except (TypeError, ValueError) as e:
        raise InputError(config.path or "config", None, f"lora: {e}") from None


# ---------------------------------------------------------------- data


def read_rows(files: Sequence[Path], kind: str, min_margin: float = 0.0) -> tuple[list, int]:
    """The records of `files` in the format `kind` trains on; pairs judged with a margin under
    `min_margin` are left out and counted."""
    rows, dropped = [], 0
    for path in files:
        for line, row in enumerate(read_jsonl(path), start=1):
            missing = [c for c in COLUMNS[kind] if c not in row]
            if missing:
                raise InputError(path, line, f"no {', '.join(missing)}: `cai train {kind}` reads "
                                 f"TRL's {'/'.join(COLUMNS[kind])} format")
            label = row.get("soft_label")
            if label is not None and not (isinstance(label, (int, float)) and 0 <= label <= 1):
                raise InputError(path, line, f"soft_label {label!r}: expected P(chosen is "
                                 "better), a number from 0 to 1")
            if kind != "sft" and row.get("margin") is not None and row["margin"] < min_margin:
                dropped += 1
                continue
            rows.append(row)
    if not rows:
        raise CaiError(f"no rows to train on in {', '.join(map(str, files))}"
                       + (f" ({dropped} under --min-margin {min_margin})" if dropped else ""))
    return rows, dropped


def prompt_key(row: dict[str, Any]) -> str:
    """A hash of the prompt's content: pairs that share a prompt share a key."""
    blob = json.dumps(row["prompt"], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Split:
    train: list[dict[str, Any]]
    heldout: list[dict[str, Any]]
    note: str | None = None


def split_heldout(rows: list[dict[str, Any]], fraction: float) -> Split:
    """Hold out whole prompts, the same ones every run: those whose hashes sort first.

    >>> rows = [{"prompt": f"p{i}", "chosen": "a"} for i in range(20)]
    >>> s = split_heldout(rows, 0.1)
    >>> len(s.train), len(s.heldout)
    (18, 2)
    """
    keys = sorted({prompt_key(r) for r in rows})
    if fraction <= 0:
        return Split(rows, [], "no held-out split: --eval-fraction is 0")
    if len(keys) < MIN_SPLIT_PROMPTS:
        return Split(rows, [], f"no held-out split: only {len(keys)} distinct prompts (fewer "
                     f"than {MIN_SPLIT_PROMPTS}), so no held-out metrics or answers")
    held = set(keys[:max(1, round(fraction * len(keys)))])
    return Split([r for r in rows if prompt_key(r) not in held],
                 [r for r in rows if prompt_key(r) in held])


def to_dataset(rows: list[dict[str, Any]], kind: str) -> Any:
    """TRL's columns only: provenance keys stay in our files, since TRL would read some of them
    (RewardTrainer takes a `margin` column as a loss margin) and mixed types break Arrow."""
    from datasets import Dataset

    records = [{c: r[c] for c in COLUMNS[kind]} for r in rows]
    if kind == "dpo":
        for record, row in zip(records, rows, strict=True):
            # P(chosen is better) from the judge; pairs without one are taken as certain.
            label = row.get("soft_label")
            record["soft_label"] = 1.0 if label is None else float(label)
    return Dataset.from_list(records)


# ---------------------------------------------------------------- soft-label DPO


def soft_dpo_loss(margin: Any, label: Any, beta: float) -> Any:
    """Conservative DPO: the sigmoid loss against the label p = P(chosen is better).

    margin is h = log-ratio(chosen) - log-ratio(rejected); the loss is
    -(p log sigmoid(beta h) + (1 - p) log sigmoid(-beta h)): plain DPO at p = 1, and at p < 1
    its minimum sits at sigmoid(beta h) = p instead of at an infinite margin.
    """
    import torch.nn.functional as F

    z = beta * margin
    return -(label * F.logsigmoid(z) + (1 - label) * F.logsigmoid(-z))


def sequence_logps(per_token: Any, mask: Any, ld_alpha: float | None = None) -> Any:
    """Completion log-probability per sequence of a [chosen..., rejected...] batch.

    With ld_alpha (length-desensitised DPO), the tokens of the longer completion past the
    length of the shorter one count ld_alpha times, so length alone moves the margin less.
    """
    mask = mask.to(per_token.dtype)
    if ld_alpha is None:
        return (per_token * mask).sum(dim=1)
    position = mask.cumsum(dim=1)
    chosen, rejected = mask.sum(dim=1).chunk(2)
    shared = chosen.minimum(rejected).repeat(2).unsqueeze(1)
    inside = (position <= shared).to(per_token.dtype)
    return (per_token * mask * (inside + ld_alpha * (1 - inside))).sum(dim=1)


@functools.cache
def soft_label_dpo_trainer() -> type:
    """TRL's DPOTrainer with each pair's soft label in its sigmoid loss.

    Made on first use, so that importing cai.train does not import TRL.
    """
    import torch
    from trl import DPOTrainer

    not_model_inputs = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}

    class SoftLabelDPOTrainer(DPOTrainer):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            collate = self.data_collator

            def with_labels(examples: list[dict[str, Any]]) -> dict[str, Any]:
                batch = collate(examples)
                batch["soft_label"] = torch.tensor([e["soft_label"] for e in examples])
                return batch

            self.data_collator = with_labels

        @property
        def uses_soft_labels(self) -> bool:
            """Only the plain sigmoid loss takes soft labels; other losses run as TRL has them."""
            return (self.loss_types == ["sigmoid"] and self.f_divergence_type == "reverse_kl"
                    and not self.use_weighting and not self.aux_loss_enabled)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            columns: list[str] = list(self._signature_columns or [])
            if "soft_label" not in columns:  # else Trainer drops the column before collating
                self._signature_columns = [*columns, "soft_label"]  # type: ignore[assignment]

        def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
            labels = inputs.pop("soft_label")
            if return_outputs or not self.uses_soft_labels:
                return super()._compute_loss(model, inputs, return_outputs)
            completion = inputs["completion_mask"]
            targets = inputs["input_ids"].masked_fill(completion == 0, -100)
            forward = {k: v for k, v in inputs.items() if k not in not_model_inputs}
            per_token = model(**forward, labels=targets, use_cache=False,
                              fused_lm_head=True).log_probs
            mask = completion[:, 1:]  # the log-prob of token t comes from position t - 1
            logps = sequence_logps(per_token[:, -mask.size(1):], mask, self.ld_alpha)
            if self.precompute_ref_logps:
                ref = (inputs["ref_chosen_logps"], inputs["ref_rejected_logps"])
            else:  # TRL's own reference pass: the frozen copy, or the base with adapters off
                ref = self.compute_ref_log_probs(
                    self.model if self.ref_model is None else self.ref_model, inputs)
            chosen, rejected = (logps - torch.cat(ref).to(logps.dtype)).chunk(2)
            self._log_rewards(self.beta * chosen.detach(), self.beta * rejected.detach())
            return soft_dpo_loss(chosen - rejected, labels.to(logps.dtype), self.beta).mean()

        def _log_rewards(self, chosen: Any, rejected: Any) -> None:
            metrics = self._metrics["train" if self.model.training else "eval"]  # type: ignore[union-attr]
            chosen = self.accelerator.gather_for_metrics(chosen)
            rejected = self.accelerator.gather_for_metrics(rejected)
            # One entry per pair rather than per batch, so the logged means are exact shares.
            metrics["rewards/chosen"].extend(chosen.tolist())
            metrics["rewards/rejected"].extend(rejected.tolist())
            metrics["rewards/accuracies"].extend((chosen > rejected).float().tolist())
            metrics["rewards/margins"].extend((chosen - rejected).tolist())

    return SoftLabelDPOTrainer


# ---------------------------------------------------------------- a training run


def train(kind: str, data: Sequence[Path], model: str, out: Path, *, lora: bool = False,
          config: Path | None = None, merge: bool = False, eval_fraction: float = 0.1,
          min_margin: float = 0.0, answer_sampling: Sampling | None = None,
          callbacks: Sequence[Any] = ()) -> dict[str, Any] | None:
    """Train `model` on `data` into `out`; return the run summary (train_summary.json).

    Under `accelerate launch` only the main process writes the files and gets the summary;
    the others return None.
    """
    started = time.monotonic()
    if merge and (not lora or kind == "reward"):
        raise CaiError("--merge merges a LoRA adapter into its base: it needs --lora, and "
                       "applies to sft and dpo")
    settings = read_config(config)
    rows, dropped = read_rows(data, kind, min_margin)
    split = split_heldout(rows, eval_fraction)
    args, trl_settings = trl_args(kind, out, lora, settings)
    peft, lora_settings = lora_config(kind, settings) if lora else (None, None)
    with args.main_process_first(desc="preparing the model"):  # one process converts `local`
        start = checkpoints.resolve_model(model)
    fit = _fit(kind, start, split, args, peft, callbacks)
    gc.collect()
    soft_labels_used = fit.pop("soft_labels_used")
    if not fit.pop("main"):
        return None
    notes = [split.note] if split.note else []
    if kind == "dpo" and not soft_labels_used and any("soft_label" in r for r in rows):
        notes.append("soft labels not used: they apply to the sigmoid loss only, and this "
                     "run's trl: settings choose another")
    summary = {
        "kind": kind, "model": model, "start": str(start),
        "from_embedded": checkpoints.from_embedded(start), "method": "lora" if lora else "full",
        "merged": merge, "data": [checkpoints.file_info(p) for p in data], "rows": len(rows),
        "dropped_low_margin": dropped, "min_margin": min_margin, "train_rows": len(split.train),
        "heldout_rows": len(split.heldout), "notes": notes,
        "constitutions": checkpoints.constitutions(rows),
        **fit, "trl": trl_settings, "lora": lora_settings, "versions": _versions(),
    }
    if kind == "dpo" and split.heldout:
        summary["implicit_reward_accuracy"] = fit["heldout"].get("eval_rewards/accuracies")
    if merge:
        checkpoints.merge_adapter(out)
    _write_results(out, summary, split.heldout, answer_sampling)
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    write_json(out / "train_summary.json", summary)
    (out / "README.md").write_text(checkpoints.model_card(summary), encoding="utf-8")
    return summary


def _write_results(out: Path, summary: dict[str, Any], heldout: list[dict[str, Any]],
                   sampling: Sampling | None) -> None:
    """The held-out rows, and the trained model's answers to their prompts."""
    checkpoints.write_jsonl(out / "heldout.jsonl", heldout)
    if summary["kind"] != "reward" and heldout:  # a reward model scores answers, writes none
        prompts = list({prompt_key(r): r for r in heldout}.values())
        default = LOCAL_SAMPLING if summary["from_embedded"] else Sampling()
        summary["heldout_answers"] = checkpoints.write_answers(
            out, prompts, sampling or default.with_(seed=0))


def _fit(kind: str, start: Path, split: Split, args: Any, peft: Any,
         callbacks: Sequence[Any]) -> dict[str, Any]:
    """Train and save; return what the summary needs, so that the trainer can be let go."""
    tokenizer = checkpoints.load_tokenizer(start)
    policy = checkpoints.load_policy(kind, start, peft is not None)
    trainer = make_trainer(kind, policy, tokenizer, split, args, peft, callbacks)
    trainer.train()
    metrics = trainer.evaluate() if split.heldout else {}
    model = trainer.accelerator.unwrap_model(trainer.model)
    if peft is not None:
        # `hf:` finds the adapter's base through this: the folder training started from, which
        # may be an adapter itself (its own base merged in before this one was made).
        model.peft_config["default"].base_model_name_or_path = str(start)
    trainer.save_model(args.output_dir)  # every rank: FSDP and ZeRO-3 gather the weights here
    params = list(model.parameters())
    return {
        "steps": trainer.state.global_step,
        "losses": [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history
                   if "loss" in e],
        "heldout": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "example": first_example(trainer.train_dataset, kind, tokenizer),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "parameters": sum(p.numel() for p in params),
        "processes": trainer.accelerator.num_processes, "main": trainer.is_world_process_zero(),
        "soft_labels_used": bool(getattr(trainer, "uses_soft_labels", False)),
    }


def make_trainer(kind: str, policy: Any, tokenizer: Any, split: Split, args: Any, peft: Any,
                 callbacks: Sequence[Any] = ()) -> Any:
    """The TRL trainer for `kind`, with the held-out rows as its evaluation set."""
    import copy

    from trl import RewardTrainer, SFTTrainer

    common = {"model": policy, "args": args, "train_dataset": to_dataset(split.train, kind),
              "eval_dataset": to_dataset(split.heldout, kind) if split.heldout else None,
              "processing_class": tokenizer, "peft_config": peft, "callbacks": list(callbacks)}
    if kind == "sft":
        return SFTTrainer(**common)
    if kind == "reward":
        return RewardTrainer(**common)
    ref = None  # with LoRA the reference is the base model, adapters switched off
    if peft is None:
        # A frozen copy of the starting weights, made here: left alone, TRL would load the
        # reference again from the path in the model's config, which need not hold them (a
        # merged adapter, or a folder written to since).
        ref = copy.deepcopy(policy).eval().requires_grad_(False)
    return soft_label_dpo_trainer()(ref_model=ref, **common)


def first_example(dataset: Any, kind: str, tokenizer: Any) -> dict[str, str]:
    """The first training example as the model sees it: the prompt the chat template made
    (with any system prompt it adds) and the tokens the loss is taken on."""
    row = dataset[0]
    decode = tokenizer.decode
    if kind == "sft":  # labels are the input ids, with -100 where no loss is taken
        pairs = list(zip(row["input_ids"], row.get("labels") or row["input_ids"], strict=True))
        return {"prompt": decode([t for t, label in pairs if label == -100]),
                "trained_on": decode([t for t, label in pairs if label != -100])}
    if kind == "dpo":
        return {"prompt": decode(row["prompt_ids"]), "chosen": decode(row["chosen_ids"]),
                "rejected": decode(row["rejected_ids"])}
    return {"chosen": decode(row["chosen_ids"]), "rejected": decode(row["rejected_ids"])}


def _versions() -> dict[str, str]:
    from importlib import metadata

    return {p: metadata.version(p) for p in ("torch", "transformers", "trl", "peft")}
