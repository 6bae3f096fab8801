"""llama-cpp-python called directly, the yardstick for `cai sample --model local`.

Same model file, same context and threads as `cai.models.backends.local`, the same messages (the
shipped system prompt before each user prompt), the same sampling and the same per-request
seeds as `cai sample --n 1 --seed 0`, one request after another.

    python benchmarks/direct_llama.py --prompts examples/prompts.jsonl --limit 6 --out FILE

It prints one JSON line: completion tokens (from usage), the seconds the generation loop took,
the seconds loading the model took, and the answers go to `--out` for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from llama_cpp import Llama

from cai.chat import step_seed
from cai.inputs import read_prompts
from cai.models.embedded import LOCAL_SAMPLING, gguf_path
from cai.stages.sample import policy_messages
from cai.templates import Templates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", required=True)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", required=True, help="JSONL file for the answers")
    a = parser.parse_args()
    items = read_prompts(a.prompts, a.limit)
    templates = Templates()
    started = time.perf_counter()
    llm: Any = Llama(model_path=str(gguf_path()), n_ctx=4096, n_threads=os.cpu_count(),
                verbose=False)
    loaded = time.perf_counter()
    s = LOCAL_SAMPLING
    tokens, answers = 0, []
    for item in items:
        messages = [m.to_dict() for m in policy_messages(templates, item.messages)]
        out = llm.create_chat_completion(
            messages=messages, temperature=s.temperature, top_p=s.top_p,
            max_tokens=s.max_tokens, stop=list(s.stop) or None,
            seed=step_seed(0, item.id, "sample:0"), repeat_penalty=s.repeat_penalty or 1.0)
        tokens += out["usage"]["completion_tokens"]
        text = (out["choices"][0]["message"].get("content") or "").strip()
        answers.append({"id": item.id, "response": text})
    done = time.perf_counter()
    with open(a.out, "w", encoding="utf-8") as f:
        for answer in answers:
            f.write(json.dumps(answer, ensure_ascii=False) + "\n")
    print(json.dumps({"requests": len(items), "completion_tokens": tokens,
                      "generate_seconds": round(done - loaded, 3),
                      "load_seconds": round(loaded - started, 3)}))


if __name__ == "__main__":
    main()
