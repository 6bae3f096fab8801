"""The one interface every model backend implements."""

from __future__ import annotations

from collections.abc import Sequence

from cai.chat import Completion, Message, Sampling


class Backend:
    """A model behind one async call: messages and sampling in, a Completion out.

    Capabilities are class attributes, so callers branch on what a backend can do, never on
    which class it is. Retries, rate limits, caching and concurrency are not a backend's job:
    `cai.client.Client` wraps every backend with them.
    """

    spec: str = ""  # the model spec it was made from, e.g. "openai:gpt-4o-mini"
    supports_logprobs: bool = False
    max_top_logprobs: int = 0  # providers cap the alternatives per token (OpenAI: 20)
    default_sampling: Sampling = Sampling()

    async def complete(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        raise NotImplementedError  # each backend overrides this one method

    async def aclose(self) -> None:
        """Release connections, threads or models."""
