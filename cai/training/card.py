"""What a training run leaves beside its model: the model card, the held-out answers, and
the facts about its data that the card lists."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cai.chat import Sampling, assistant, messages_from_dicts
from cai.records.rewrite import write_jsonl


def write_answers(out: Path, rows: list[dict[str, Any]], sampling: Sampling) -> int:
    """The answers of the checkpoint in `out` to the prompts of `rows`, made through the `hf:`
    backend as the next round would make them, into heldout_answers.jsonl."""
    from cai.models.backends.hf import HFBackend

    backend = HFBackend(str(out))
    try:
        answers = backend.generate_all([(messages_from_dicts(r["prompt"]), sampling)
                                        for r in rows])
    finally:
        backend.close()
    write_jsonl(out / "heldout_answers.jsonl", [
        {"id": r.get("id"), "prompt": r["prompt"], "completion": assistant(a.text),
         "model": f"hf:{out}", "finish_reason": a.finish_reason, "sampling": sampling.to_dict()}
        for r, a in zip(rows, answers, strict=True)])
    return len(answers)


def constitutions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The constitutions the records name (name, version, sha256), each once."""
    found = {}
    for r in rows:
        c = r.get("constitution")
        if isinstance(c, dict) and c.get("sha256"):
            found[c["sha256"]] = c
    return list(found.values())


def model_card(s: dict[str, Any], description: str) -> str:
    """README.md for a trained checkpoint, from its train_summary.json and what its method
    does, in words."""
    data = "\n".join(f"- `{d['path']}` (sha256 `{d['sha256']}`)" for d in s["data"])
    consts = "\n".join(f"- {c.get('name')} {c.get('version')}: sha256 `{c['sha256']}`"
                       for c in s["constitutions"]) or "- none named in the data"
    form = ("a LoRA adapter merged into its base" if s["merged"] else "a LoRA adapter"
            if s["method"] == "lora" else "a full fine-tune")
    local = LOCAL_NOTE if s["from_embedded"] else ""
    notes = "".join(f"\n- {n}" for n in s["notes"]) or " none"
    return f"""# cai {s['kind']} checkpoint

{description}: {form}, trained by `cai train {s['kind']}` from `{s['model']}`
({s['start']}). Generate with it as `--model hf:<this folder>`.
{local}
## Data
{data}

{s['train_rows']} rows trained on, {s['heldout_rows']} held out (heldout.jsonl),
{s['dropped_low_margin']} left out under min margin {s['min_margin']}.

## Constitutions
{consts}

## Training
{s['steps']} steps. TRL config:
```json
{json.dumps(s['trl'], indent=2)}
```
LoRA: `{json.dumps(s['lora'])}`

## Held-out metrics
```json
{json.dumps(s['heldout'], indent=2)}
```
Notes:{notes}
"""


LOCAL_NOTE = ("\nThe base weights are the embedded SmolLM2-135M-Instruct GGUF (4-bit Q4_1) "
              "dequantized to float32: dequantized 4-bit weights, not the original release.\n")


def file_info(path: Path) -> dict[str, str]:
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
