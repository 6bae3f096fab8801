"""`vllm:MODEL_OR_PATH`: offline batched generation in-process with `vllm.LLM`, on a GPU.

Concurrent requests are gathered into one `LLM.chat` call. For a vLLM *server*, use
`openai:MODEL --base-url http://HOST:8000/v1` instead.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai.chat import Completion, Message, Sampling, TokenLogprob, Usage
from cai.errors import CaiError
from cai.models.backends.base import Backend
from cai.models.backends.gather import Batcher, Request
from cai.models.identity import folder_fingerprint


class VLLMBackend(Backend):
    supports_logprobs = True
    max_top_logprobs = 20

    def __init__(self, model: str, **engine_args: Any):
        if importlib.util.find_spec("vllm") is None:
            raise CaiError("vllm is not installed; `pip install 'cai-toolkit[vllm]'` on a "
                           "machine with a GPU, or serve the model with `vllm serve` and use "
                           "openai:MODEL --base-url")
        self.spec = f"vllm:{model}"
        self.model = model
        self.engine_args = engine_args
        self._llm: Any = None
        self._batcher = Batcher(self._run, max_batch=256, name="cai-vllm")

    @property
    def identity(self) -> str:
        """A local folder by its weights' fingerprint; a hub name as it is."""
        folder = Path(self.model).expanduser()
        if folder.is_dir():
            return f"{self.spec}@{folder_fingerprint(folder)[:16]}"
        return self.spec

    async def complete(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        return await self._batcher.submit(messages, sampling)

    def _run(self, batch: list[Request]) -> list[Completion]:
        from vllm import LLM, SamplingParams

        if self._llm is None:
            self._llm = LLM(model=self.model, **self.engine_args)
        params = [SamplingParams(
            temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed,
            stop=list(s.stop) or None, repetition_penalty=s.repeat_penalty or 1.0,
            logprobs=s.top_logprobs or None) for _, s in batch]
        outputs = self._llm.chat([[m.to_dict() for m in msgs] for msgs, _ in batch],
                                 sampling_params=params, use_tqdm=False)
        return [self._completion(o) for o in outputs]

    def _completion(self, output: Any) -> Completion:
        gen = output.outputs[0]
        logprobs = None
        if gen.logprobs:
            logprobs = tuple(
                TokenLogprob(step[tid].decoded_token or "", step[tid].logprob,
                             {lp.decoded_token or "": lp.logprob for lp in step.values()})
                for tid, step in zip(gen.token_ids, gen.logprobs, strict=False))
        return Completion(
            text=gen.text.strip(), finish_reason=gen.finish_reason or "stop",
            usage=Usage(len(output.prompt_token_ids or ()), len(gen.token_ids)),
            model=self.model, logprobs=logprobs)

    async def aclose(self) -> None:
        self._batcher.close()
        self._llm = None
