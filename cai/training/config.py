"""A training config file: its `trl:` mapping goes straight into TRL's SFTConfig / DPOConfig /
RewardConfig over cai's few defaults, and its `lora:` mapping into peft's LoraConfig. Keys are
checked against those classes when read, with the file and line of a wrong one."""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cai.errors import InputError, yaml_line
from cai.records import read_text

LEARNING_RATES = {("sft", False): 2e-5, ("sft", True): 2e-4, ("dpo", False): 1e-6,
                  ("dpo", True): 1e-5, ("reward", False): 1e-5, ("reward", True): 1e-4,
                  ("grpo", False): 1e-6, ("grpo", True): 1e-5}
# GRPO: groups of 4 completions, short ones, no KL term (TRL's default), a log every step.
GRPO_DEFAULTS = {"num_generations": 4, "max_completion_length": 128,
                 "per_device_train_batch_size": 4}
LORA_DEFAULTS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
SECTIONS = {"trl": "TRL's config for the command", "lora": "peft's LoraConfig"}


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
    text = read_text(path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise InputError(path, yaml_line(e, text), f"not valid YAML: {e}") from None
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
        **(GRPO_DEFAULTS if kind == "grpo" else {}),
    }


def trl_args(kind: str, out: Path, lora: bool, config: TrainConfig) -> tuple[Any, dict]:
    """TRL's config for `kind`: our defaults, then the file's `trl:` mapping as it stands."""
    import torch
    from trl import DPOConfig, GRPOConfig, RewardConfig, SFTConfig

    cls = {"sft": SFTConfig, "dpo": DPOConfig, "reward": RewardConfig, "grpo": GRPOConfig}[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    config.check("trl", known, cls.__name__)
    if "output_dir" in config.trl:  # the model, card and summary must land in one folder
        raise InputError(config.path or "config", config.lines.get(("trl", "output_dir")),
                         "trl: output_dir is set by --out; remove it here")
    defaults = default_settings(kind, out, lora, torch.cuda.is_available())
    checkpointing = {"gradient_checkpointing", "activation_checkpointing"}
    if checkpointing & config.trl.keys():  # the file's choice, under either name, stands
        defaults.pop("gradient_checkpointing")
    elif "activation_checkpointing" in known:  # transformers 5.2x's name; the old one warns
        defaults["activation_checkpointing"] = defaults.pop("gradient_checkpointing")
    settings = {**defaults, **config.trl}
    if settings.get("use_liger_kernel") and importlib.util.find_spec("liger_kernel") is None:
        raise InputError(config.path or "config", config.lines.get(("trl", "use_liger_kernel")),
                         "trl: use_liger_kernel needs liger-kernel, which is not installed: "
                         "pip install 'cai-toolkit[gpu]' on a CUDA machine, or remove this line")
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
