"""`openai:MODEL`: OpenAI's API and every OpenAI-compatible server (vLLM, llama.cpp, Ollama).

The SDK's own retries are off (`max_retries=0`): `cai.client.Client` retries in one place, so
attempts do not multiply. Several base URLs spread requests over replicas, round robin.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

from cai.backends.base import Backend, redact, status_error
from cai.chat import Completion, Message, Sampling, TokenLogprob, Usage
from cai.errors import BackendError, CaiError

KEY_VARIABLE = "OPENAI_API_KEY"
MAX_TOP_LOGPROBS = 20  # OpenAI's cap on alternatives per token


def request_body(model: str, messages: Sequence[Message], sampling: Sampling) -> dict[str, Any]:
    """The Chat Completions request body; also the `body` of a Batch API line."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [m.to_dict() for m in messages],
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.top_logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = min(sampling.top_logprobs, MAX_TOP_LOGPROBS)
    return body


def chat_completion(response: Any, model: str) -> Completion:
    """A Completion from a Chat Completions response: the SDK's object, or a plain dict (as in
    a Batch API output line) that is validated into one first."""
    if isinstance(response, dict):
        from openai.types.chat import ChatCompletion

        response = ChatCompletion.model_validate(response)
    if not getattr(response, "choices", None):
        raise BackendError("the response had no choices", retryable=True, cause="empty")
    choice = response.choices[0]
    text = choice.message.content if choice.message else None
    if text is None:
        if choice.message is not None and choice.message.refusal:
            raise BackendError(f"the provider refused: {choice.message.refusal}",
                               cause="refusal")
        raise BackendError("the response had no message content", retryable=True,
                           cause="empty")
    usage = response.usage
    logprobs = None
    if choice.logprobs is not None and choice.logprobs.content:
        logprobs = tuple(
            TokenLogprob(t.token, t.logprob, {a.token: a.logprob for a in t.top_logprobs or ()})
            for t in choice.logprobs.content
        )
    return Completion(
        text=text.strip(),
        finish_reason=choice.finish_reason or "stop",
        usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
        model=response.model or model,
        logprobs=logprobs,
    )


class OpenAIBackend(Backend):
    supports_logprobs = True
    max_top_logprobs = MAX_TOP_LOGPROBS

    def __init__(self, model: str, *, base_urls: Sequence[str] = (), api_key: str | None = None,
                 timeout: float = 120.0, http_client: Any = None):
        import openai

        self.spec = f"openai:{model}"
        self.model = model
        key = api_key or os.environ.get(KEY_VARIABLE)
        if not key:
            if not base_urls:
                raise CaiError(f"{KEY_VARIABLE} is not set; export it, or pass --base-url to "
                               "use an OpenAI-compatible server")
            key = "unused"  # local servers take any key
        self._key = key
        self._clients = [
            openai.AsyncOpenAI(api_key=key, base_url=url, max_retries=0, timeout=timeout,
                               http_client=http_client)
            for url in (base_urls or [None])  # type: ignore[list-item]
        ]
        self._next = itertools.cycle(self._clients)
        self.sdk = self._clients[0]  # the first replica's SDK client; `cai.batch` uses it

    async def complete(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        import openai

        try:
            response = await next(self._next).chat.completions.create(
                **request_body(self.model, messages, sampling))
        except openai.APIStatusError as e:
            raise status_error(e.status_code, self._clean(e.message),
                               e.response.headers if e.response is not None else None) from None
        except openai.APITimeoutError:
            raise BackendError("request timed out", retryable=True, cause="timeout") from None
        except openai.APIConnectionError as e:
            raise BackendError(f"connection failed: {self._clean(e)}", retryable=True,
                               cause="connection") from None
        except (openai.APIResponseValidationError, ValueError) as e:
            raise BackendError(f"malformed response: {self._clean(e)}", retryable=True,
                               cause="malformed") from None
        return chat_completion(response, self.model)

    def _clean(self, e: object) -> str:
        return redact(e, self._key)

    async def aclose(self) -> None:
        for c in self._clients:
            await c.close()
