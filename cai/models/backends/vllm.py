"""`vllm:MODEL_OR_PATH`: offline batched generation in-process with `vllm.LLM`, on a GPU.

Engine arguments ride on the spec after commas, e.g.
`vllm:meta-llama/Llama-3.1-8B-Instruct,tensor_parallel_size=2,gpu_memory_utilization=0.85`.
Concurrent requests are gathered into one `LLM.chat` call. For a vLLM *server*, use
`openai:MODEL --base-url http://HOST:8000/v1` (with `--judge-constrain guided-choice`).

vLLM cannot be installed where cai is built and tested (it needs CUDA, and its wheel is
large): the mapping between cai's types and vLLM's is tested against a copy of vLLM's output
shapes, never against vLLM itself. This backend is not called tested.
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

# The engine arguments a spec may set, and their types.
ENGINE_ARGS: dict[str, type] = {"tensor_parallel_size": int, "gpu_memory_utilization": float,
                                "max_model_len": int, "dtype": str}


def parse_model(text: str) -> tuple[str, dict[str, Any]]:
    """`MODEL,key=value,...` -> (MODEL, engine arguments), each checked.

    >>> parse_model("org/m,tensor_parallel_size=2,dtype=bfloat16")
    ('org/m', {'tensor_parallel_size': 2, 'dtype': 'bfloat16'})
    """
    model, *parts = text.split(",")
    args: dict[str, Any] = {}
    for part in parts:
        key, _, value = part.partition("=")
        kind = ENGINE_ARGS.get(key.strip())
        if kind is None or not value:
            raise CaiError(f"vllm:{text}: '{part}' is not an engine argument; give key=value "
                           f"with a key among {', '.join(ENGINE_ARGS)}")
        try:
            args[key.strip()] = kind(value.strip())
        except ValueError:
            raise CaiError(f"vllm:{text}: {key} takes a {kind.__name__}, not {value!r}") from None
    if "gpu_memory_utilization" in args and not 0 < args["gpu_memory_utilization"] <= 1:
        raise CaiError(f"vllm:{text}: gpu_memory_utilization is a fraction from 0 to 1")
    return model, args


def sampling_params(s: Sampling) -> dict[str, Any]:
    """The keyword arguments of vLLM's SamplingParams for our sampling; `choices` become
    its structured-output choice, so the reply is one of them."""
    params: dict[str, Any] = {
        "temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens,
        "seed": s.seed, "stop": list(s.stop) or None,
        "repetition_penalty": s.repeat_penalty or 1.0, "logprobs": s.top_logprobs or None}
    if s.choices:
        params["structured_outputs"] = {"choice": list(s.choices)}
    return params


def completion(output: Any, model: str) -> Completion:
    """A Completion from one of vLLM's RequestOutputs (its first CompletionOutput)."""
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
        model=model, logprobs=logprobs)


class VLLMBackend(Backend):
    supports_logprobs = True
    max_top_logprobs = 20
    sends = Backend.sends | {"choices"}

    def __init__(self, model: str, **engine_args: Any):
        if importlib.util.find_spec("vllm") is None:
            raise CaiError("vllm is not installed; `pip install 'cai-toolkit[vllm]'` on a "
                           "machine with a GPU, or serve the model with `vllm serve` and use "
                           "openai:MODEL --base-url")
        self.spec = f"vllm:{model}"
        self.model, parsed = parse_model(model)
        self.engine_args = {**parsed, **engine_args}
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
        if self._llm is None:
            # Built here, on the thread that runs the event loop (the main one): vLLM's engine
            # sets signal handlers and starts worker processes, which it cannot do from the
            # batch worker thread. Loading blocks the loop, which has nothing else to do.
            from vllm import LLM

            self._llm = LLM(model=self.model, **self.engine_args)
        return await self._batcher.submit(messages, sampling)

    def _run(self, batch: list[Request]) -> list[Completion]:
        from vllm import SamplingParams

        params = []
        for _, s in batch:
            kwargs = sampling_params(s)
            if "structured_outputs" in kwargs:
                from vllm.sampling_params import StructuredOutputsParams

                kwargs["structured_outputs"] = StructuredOutputsParams(
                    **kwargs["structured_outputs"])
            params.append(SamplingParams(**kwargs))
        outputs = self._llm.chat([[m.to_dict() for m in msgs] for msgs, _ in batch],
                                 sampling_params=params, use_tqdm=False)
        return [completion(o, self.model) for o in outputs]

    async def aclose(self) -> None:
        self._batcher.close()
        self._llm = None
