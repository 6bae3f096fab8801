"""`openai:MODEL`: OpenAI's API and every OpenAI-compatible server (vLLM, llama.cpp, Ollama).

The SDK's own retries are off (`max_retries=0`): `cai.models.client.Client` retries in one place, so
attempts do not multiply. Several base URLs spread requests over replicas, round robin.

Client CPU matters when many fast replicas answer (measured in benchmarks/): requests go through
the SDK's `post` (auth, headers, HTTP errors as the SDK raises them) with a plain JSON body, which
skips the typed-parameter transform that `chat.completions.create` runs on every call, and each
URL gets a few SDK clients, because an HTTP connection pool scans all its connections on every
request and a few small pools cost less than one large one. The pools share one TLS
context, which is costly to build.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from typing import Any

from cai.chat import Completion, Message, Sampling, TokenLogprob, Usage
from cai.errors import BackendError, CaiError
from cai.models.backends.base import Backend, redact, sdk_error
from cai.models.identity import deployment

KEY_VARIABLE = "OPENAI_API_KEY"
MAX_TOP_LOGPROBS = 20  # OpenAI's cap on alternatives per token


def request_body(model: str, messages: Sequence[Message], sampling: Sampling,
                 constrain: str | None = None) -> dict[str, Any]:
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
    if sampling.choices:  # only sent to a server that said it can (OpenAIBackend.constrain)
        body.update(constraint(sampling.choices, constrain))
    return body


# How OpenAI-compatible servers constrain a reply to given options, as each documents it:
# llama.cpp's servers take a GBNF grammar, vLLM's a list of choices.
CONSTRAINTS = ("grammar", "guided-choice")


def constraint(choices: Sequence[str], how: str | None) -> dict[str, Any]:
    """The request fields that limit a reply to one of `choices`."""
    if how == "grammar":
        return {"grammar": "root ::= " + " | ".join(json.dumps(c) for c in choices)}
    if how == "guided-choice":
        return {"guided_choice": list(choices)}
    raise CaiError(f"no way to constrain replies given ({how!r}); use one of "
                   f"{', '.join(CONSTRAINTS)}")


def chat_completion(body: dict[str, Any], model: str) -> Completion:
    """A Completion from a Chat Completions response body (a live response or a Batch API
    output line). Read from the JSON directly: building the SDK's typed objects for every
    response costs more client CPU than the rest of a request together."""
    choices = body.get("choices")
    if not choices:
        raise BackendError("the response had no choices", retryable=True, cause="empty")
    choice = choices[0]
    message = choice.get("message") or {}
    text = message.get("content")
    if text is None:
        if message.get("refusal"):
            raise BackendError(f"the provider refused: {message['refusal']}", cause="refusal")
        raise BackendError("the response had no message content", retryable=True,
                           cause="empty")
    usage = body.get("usage") or {}
    logprobs = None
    content = (choice.get("logprobs") or {}).get("content")
    if content:
        logprobs = tuple(
            TokenLogprob(t["token"], t["logprob"],
                         {a["token"]: a["logprob"] for a in t.get("top_logprobs") or ()})
            for t in content)
    return Completion(
        text=text.strip(),
        finish_reason=choice.get("finish_reason") or "stop",
        usage=Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0),
        model=body.get("model") or model,
        logprobs=logprobs,
    )


class OpenAIBackend(Backend):
    supports_logprobs = True
    max_top_logprobs = MAX_TOP_LOGPROBS
    sends = frozenset(("temperature", "top_p", "max_tokens", "seed", "stop", "top_logprobs"))

    def __init__(self, model: str, *, base_urls: Sequence[str] = (), api_key: str | None = None,
                 timeout: float = 120.0, http_client: Any = None, pools_per_url: int = 4,
                 constrain: str | None = None):
        import openai

        if constrain is not None:
            if constrain not in CONSTRAINTS:
                constraint((), constrain)  # the error naming the ways there are
            if not base_urls:
                raise CaiError("--judge-constrain is for OpenAI-compatible servers (with "
                               "--base-url); OpenAI's own API has no such option")
            # this server can limit a reply to given options: the judge's A or B
            self.sends = self.sends | {"choices"}
        self.constrain = constrain

        self.spec = f"openai:{model}"
        self.model = model
        self.base_url = base_urls[0] if base_urls else None
        self._urls = tuple(base_urls)
        key = api_key or os.environ.get(KEY_VARIABLE)
        if not key:
            if not base_urls:
                raise CaiError(f"{KEY_VARIABLE} is not set; export it, or pass --base-url to "
                               "use an OpenAI-compatible server")
            key = "unused"  # local servers take any key
        self._key = key
        pools = 1 if http_client is not None else pools_per_url
        tls = _tls_context() if pools > 1 else None
        self._clients = [
            openai.AsyncOpenAI(
                api_key=key, base_url=url, max_retries=0, timeout=timeout,
                http_client=http_client or (openai.DefaultAsyncHttpxClient(verify=tls)
                                            if tls is not None else None))
            for _ in range(pools)
            for url in (base_urls or [None])  # type: ignore[list-item]
        ]
        self._next = itertools.cycle(self._clients)

    @property
    def identity(self) -> str:
        """OpenAI's API by model name; any other server by its replicas (one deployment)."""
        if not self._urls:
            return self.spec
        return f"{self.spec}@{deployment(self._urls)}"

    async def complete(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        import openai

        try:
            body = await next(self._next).post(
                "/chat/completions", cast_to=object,
                body=request_body(self.model, messages, sampling, self.constrain))
            if not isinstance(body, dict):
                raise ValueError("the response body is not a JSON object")
        except Exception as e:
            if (error := sdk_error(e, openai, self._key)) is None:
                raise
            raise error from None
        try:
            return chat_completion(body, self.model)
        except (KeyError, TypeError, AttributeError) as e:  # JSON, but not a completion's shape
            raise BackendError(f"malformed response: {type(e).__name__} "
                               f"{redact(e, self._key)}", retryable=True,
                               cause="malformed") from None

    async def aclose(self) -> None:
        for c in self._clients:
            await c.close()


def _tls_context() -> Any:
    """One TLS context for all pools, made the way the SDK's HTTP library makes its own
    (certificate bundle and SSL_CERT_FILE included); None if that library is not at hand."""
    for name in ("httpx2", "httpx"):  # newer SDKs use httpx2
        try:
            module = __import__(name)
            return module.create_ssl_context()
        except (ImportError, AttributeError):
            continue
    return None
