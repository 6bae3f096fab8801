"""The vllm backend's mapping between cai's types and vLLM's, without a GPU.

vLLM cannot be installed here (it needs CUDA), so the output types below are a small copy of
the shapes of vLLM's own `RequestOutput`, `CompletionOutput` and `Logprob` (vllm.outputs,
vllm.logprobs): the fields the backend reads, with their names and nesting. Where vLLM is
installed, its own classes are used instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cai.chat import Sampling
from cai.errors import CaiError
from cai.models.backends.vllm import completion, parse_model, sampling_params
from tests.helpers import has

if has("vllm"):  # the real classes
    from vllm.logprobs import Logprob
    from vllm.outputs import CompletionOutput, RequestOutput
else:  # a copy of their shapes; see the module docstring

    @dataclass
    class Logprob:  # type: ignore[no-redef]
        logprob: float
        rank: int | None = None
        decoded_token: str | None = None

    @dataclass
    class CompletionOutput:  # type: ignore[no-redef]
        index: int
        text: str
        token_ids: list[int]
        cumulative_logprob: float | None
        logprobs: list[dict[int, Logprob]] | None
        finish_reason: str | None = None

    @dataclass
    class RequestOutput:  # type: ignore[no-redef]
        request_id: str
        prompt: str | None
        prompt_token_ids: list[int] | None
        prompt_logprobs: None
        outputs: list[CompletionOutput]
        finished: bool


def test_engine_arguments_ride_on_the_spec():
    assert parse_model("org/m,tensor_parallel_size=2,gpu_memory_utilization=0.8,"
                       "max_model_len=4096,dtype=bfloat16") == (
        "org/m", {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.8,
                  "max_model_len": 4096, "dtype": "bfloat16"})
    assert parse_model("/ckpt/sft") == ("/ckpt/sft", {})
    with pytest.raises(CaiError, match="'colour=red' is not an engine argument"):
        parse_model("m,colour=red")
    with pytest.raises(CaiError, match="tensor_parallel_size takes a int"):
        parse_model("m,tensor_parallel_size=two")
    with pytest.raises(CaiError, match="gpu_memory_utilization is a fraction"):
        parse_model("m,gpu_memory_utilization=85")


def test_sampling_maps_to_sampling_params():
    s = Sampling(temperature=0.0, top_p=1.0, max_tokens=1, seed=7, top_logprobs=20,
                 choices=("A", "B"))
    assert sampling_params(s) == {
        "temperature": 0.0, "top_p": 1.0, "max_tokens": 1, "seed": 7, "stop": None,
        "repetition_penalty": 1.0, "logprobs": 20,
        "structured_outputs": {"choice": ["A", "B"]}}
    plain = sampling_params(Sampling(stop=("\n",), repeat_penalty=1.2))
    assert plain["stop"] == ["\n"] and plain["repetition_penalty"] == 1.2
    assert "structured_outputs" not in plain and plain["logprobs"] is None


def test_a_request_output_maps_to_a_completion():
    steps = [{5: Logprob(-0.1, 1, "A"), 6: Logprob(-2.4, 2, "B")}]
    out = RequestOutput(request_id="0", prompt=None, prompt_token_ids=[1, 2, 3],
                        prompt_logprobs=None, finished=True,
                        outputs=[CompletionOutput(0, " A ", [5], -0.1, steps, "stop")])
    c = completion(out, "org/m")
    assert (c.text, c.finish_reason, c.model) == ("A", "stop", "org/m")
    assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (3, 1)
    assert c.logprobs is not None and c.logprobs[0].token == "A"
    assert c.logprobs[0].top == {"A": -0.1, "B": -2.4}
