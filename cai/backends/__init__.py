"""Model backends, chosen by a spec string: `local`, `openai:MODEL`, `hf:FOLDER`, `fake:echo`, ...

Every backend implements `Backend.complete`; `load_backend` turns a spec into one.
"""

from __future__ import annotations

from collections.abc import Sequence

from cai.backends.base import Backend
from cai.errors import CaiError

SPECS = ("local, openai:MODEL, anthropic:MODEL, hf:PATH, vllm:MODEL_OR_PATH, fake:echo, "
         "fake:fixed:TEXT")


def load_backend(spec: str, *, base_urls: Sequence[str] = (), logprobs: bool = False,
                 lazy: bool = False, concurrency: int = 8) -> Backend:
    """Make the backend a model spec names. `logprobs` asks for token log-probabilities;
    `lazy` (for dry runs) skips the API key check, since nothing will be sent; `concurrency`
    sizes HTTP connection pools."""
    kind, _, model = spec.partition(":")
    key = "dry-run" if lazy else None
    if kind == "local":
        from cai.backends.local import LocalBackend

        return LocalBackend(model_path=model or None, logprobs=logprobs)
    if kind == "openai":
        if not model:
            raise CaiError("openai needs a model name: openai:MODEL, e.g. openai:gpt-4o-mini")
        from cai.backends.openai import OpenAIBackend

        return OpenAIBackend(model, base_urls=base_urls, api_key=key,
                             pools_per_url=pools_for(concurrency))
    if kind == "anthropic":
        if not model:
            raise CaiError("anthropic needs a model name: anthropic:MODEL, e.g. "
                           "anthropic:claude-haiku-4-5")
        from cai.backends.anthropic import AnthropicBackend

        return AnthropicBackend(model, base_urls=base_urls, api_key=key)
    if kind == "vllm":
        if not model:
            raise CaiError("vllm needs a model: vllm:MODEL_OR_PATH")
        from cai.backends.vllm import VLLMBackend

        return VLLMBackend(model)
    if kind == "hf":
        from cai.backends.hf import HFBackend

        return HFBackend(model)
    if kind == "fake":
        from cai.backends.fake import FakeBackend

        return FakeBackend(model or "echo")
    raise CaiError(f"unknown model '{spec}'; use one of: {SPECS}")


def pools_for(concurrency: int) -> int:
    """About one HTTP connection pool per 16 requests in flight (see backends/openai.py)."""
    return max(1, -(-concurrency // 16))


def split_urls(values: Sequence[str]) -> list[str]:
    """`--base-url` may be repeated or comma-separated."""
    return [u.strip() for v in values for u in v.split(",") if u.strip()]


__all__ = ["Backend", "load_backend", "split_urls"]
