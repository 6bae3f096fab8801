"""The one interface every model backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cai.chat import Completion, Message, Sampling
from cai.errors import BackendError


class Backend:
    """A model behind one async call: messages and sampling in, a Completion out.

    Capabilities are class attributes, so callers branch on what a backend can do, never on
    which class it is. Retries, rate limits, caching and concurrency are not a backend's job:
    `cai.models.client.Client` wraps every backend with them.
    """

    spec: str = ""  # the model spec it was made from, e.g. "openai:gpt-4o-mini"
    supports_logprobs: bool = False
    max_top_logprobs: int = 0  # providers cap the alternatives per token (OpenAI: 20)
    default_sampling: Sampling = Sampling()
    base_url: str | None = None  # the server it talks to, for HTTP backends (the first replica)
    # How many requests it really runs at once (None: as many as it is given). The client
    # lets no more in, so the budget and the deadline are checked when a request can start,
    # not while it waits in the backend's own queue.
    parallel: int | None = None
    # The Sampling fields this backend really sends to its model; the others it cannot honour.
    # "choices" here means it can constrain a reply to given options (see Sampling.choices).
    sends: frozenset[str] = frozenset(
        ("temperature", "top_p", "max_tokens", "seed", "repeat_penalty", "stop", "top_logprobs"))

    @property
    def identity(self) -> str:
        """What identifies this backend's answers in cache keys and records: its weights'
        fingerprint or its deployment where the spec alone does not (`models/identity.py`)."""
        return self.spec

    async def complete(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        raise NotImplementedError  # each backend overrides this one method

    async def aclose(self) -> None:
        """Release connections, threads or models."""


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A tokenizer-free estimate: about four characters a token, plus a little per message."""
    return sum(len(m.content) // 4 + 4 for m in messages)


def status_error(status: int, message: str, headers: object = None) -> BackendError:
    """An HTTP error from a provider, as a BackendError that says whether to retry.

    429, 408, 409 and 5xx (529 is Anthropic's "overloaded") are worth retrying; the rest,
    400 above all, fail the item with their reason.
    """
    retry_after = None
    header = headers.get("retry-after") if hasattr(headers, "get") else None
    if header:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    retryable = status in (408, 409, 429) or status >= 500
    return BackendError(f"HTTP {status}: {message}", retryable=retryable, cause=str(status),
                        retry_after=retry_after)


def redact(text: object, secret: str) -> str:
    """An error's text with the API key taken out, in case a server echoed it; kept short."""
    return str(text).replace(secret, "***")[:500]


def sdk_error(e: BaseException, sdk: Any, secret: str) -> BackendError | None:
    """An exception of the openai or anthropic SDK (they share their error classes' names) as
    a BackendError that says whether to retry, with the key scrubbed; None for anything else."""
    if isinstance(e, sdk.APIStatusError):
        headers = e.response.headers if e.response is not None else None
        return status_error(e.status_code, redact(e.message, secret), headers)
    if isinstance(e, sdk.APITimeoutError):
        return BackendError("request timed out", retryable=True, cause="timeout")
    if isinstance(e, sdk.APIConnectionError):
        return BackendError(f"connection failed: {redact(e, secret)}", retryable=True,
                            cause="connection")
    if isinstance(e, (sdk.APIResponseValidationError, ValueError)):
        return BackendError(f"malformed response: {redact(e, secret)}", retryable=True,
                            cause="malformed")
    return None
