"""`anthropic:MODEL`: Anthropic's Messages API through the official SDK.

It has no token log-probabilities, so the judge reads its verdicts from text. The SDK's own
retries are off; `cai.models.client.Client` retries in one place.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from cai.chat import Completion, Message, Sampling, Usage
from cai.errors import BackendError, CaiError
from cai.models.backends.base import Backend, sdk_error
from cai.models.identity import deployment

KEY_VARIABLE = "ANTHROPIC_API_KEY"
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


def request_params(model: str, messages: Sequence[Message], sampling: Sampling) -> dict[str, Any]:
    """The Messages API parameters for a request; also the body of a batch entry.

    Anthropic's current Messages API takes no temperature, top_p or seed (the SDK no longer
    has them), so only the length and stop sequences of `sampling` reach the provider, and
    records show only those (`Client.sent`).
    """
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": sampling.max_tokens,
        "messages": [m.to_dict() for m in messages if m.role != "system"],
    }
    if system:
        params["system"] = system
    if sampling.stop:
        params["stop_sequences"] = list(sampling.stop)
    return params


def message_completion(message: Any, model: str) -> Completion:
    """A Completion from a Messages API response (SDK object or plain dict)."""
    get = (lambda o, k: o.get(k)) if isinstance(message, dict) else getattr  # noqa: E731
    stop = get(message, "stop_reason")
    if stop == "refusal":
        raise BackendError("the provider refused to answer this request", cause="refusal")
    blocks = get(message, "content") or []
    if not blocks:
        raise BackendError("the response had no content", retryable=True, cause="empty")
    text = "".join(get(b, "text") or "" for b in blocks if get(b, "type") == "text")
    usage = get(message, "usage")
    return Completion(
        text=text.strip(), finish_reason=FINISH.get(stop, stop or "stop"),
        usage=Usage(get(usage, "input_tokens") or 0, get(usage, "output_tokens") or 0)
        if usage else Usage(),
        model=get(message, "model") or model,
    )


class AnthropicBackend(Backend):
    supports_logprobs = False
    default_sampling = Sampling(top_p=1.0)
    sends = frozenset(("max_tokens", "stop"))  # the SDK (2.x) has no temperature, top_p or seed

    def __init__(self, model: str, *, base_urls: Sequence[str] = (), api_key: str | None = None,
                 timeout: float = 120.0, http_client: Any = None):
        import anthropic

        self.spec = f"anthropic:{model}"
        self.model = model
        self.base_url = base_urls[0] if base_urls else None
        key = api_key or os.environ.get(KEY_VARIABLE)
        if not key:
            raise CaiError(f"{KEY_VARIABLE} is not set; export it to use {self.spec}")
        self._key = key
        self._client = anthropic.AsyncAnthropic(
            api_key=key, base_url=base_urls[0] if base_urls else None, max_retries=0,
            timeout=timeout, http_client=http_client)
        self.sdk = self._client  # the SDK client; `cai.models.provider_batch` uses it

    @property
    def identity(self) -> str:
        """Anthropic's API by model name; a stand-in by its address."""
        return f"{self.spec}@{deployment([self.base_url])}" if self.base_url else self.spec

    async def complete(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        import anthropic

        try:
            message = await self._client.messages.create(
                **request_params(self.model, messages, sampling))
        except Exception as e:
            if (error := sdk_error(e, anthropic, self._key)) is None:
                raise
            raise error from None
        return message_completion(message, self.model)

    async def aclose(self) -> None:
        await self._client.close()
