"""The kinds of model a spec can name (`local`, `openai:MODEL`, `hf:FOLDER`, ...), each
registered once with its class and what it can do.

A spec is parsed here and nowhere else: the budget asks a kind whether it is free, the batch
code which provider batch API it has, and the session which class to build. A new backend is
one entry in `KINDS` and one module in `backends/`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cai.errors import CaiError
from cai.models.backends.base import Backend


@dataclass(frozen=True)
class Kind:
    """One kind of backend: where it lives and what using it takes. What it can do
    (log-probabilities, constrained choices) its backend class declares."""

    name: str
    backend: str  # "module:Class", imported only when a spec of this kind is loaded
    free: bool  # runs on the user's own hardware: no price, no key
    key_variable: str | None = None  # the environment variable of its API key
    batch_api: str | None = None  # its provider batch API, if any
    needs_model: str = ""  # an example spec, when a model name is required

    def backend_class(self) -> type[Backend]:
        module, _, name = self.backend.partition(":")
        cls: type[Backend] = getattr(importlib.import_module(module), name)
        return cls


_B = "cai.models.backends."
KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("local", _B + "local:LocalBackend", free=True),
    Kind("openai", _B + "openai:OpenAIBackend", free=False, key_variable="OPENAI_API_KEY",
         batch_api="openai", needs_model="openai:gpt-4o-mini"),
    Kind("anthropic", _B + "anthropic:AnthropicBackend", free=False,
         key_variable="ANTHROPIC_API_KEY", batch_api="anthropic",
         needs_model="anthropic:claude-haiku-4-5"),
    Kind("hf", _B + "hf:HFBackend", free=True),
    Kind("vllm", _B + "vllm:VLLMBackend", free=True, needs_model="vllm:MODEL_OR_PATH"),
    Kind("fake", _B + "fake:FakeBackend", free=True),
)}
# Not a kind a user names: a dry run wraps the real backend in it (backends/dryrun.py).
DRY_RUN = Kind("dry-run", _B + "dryrun:DryRunBackend", free=True)

SPECS = ("local, openai:MODEL, anthropic:MODEL, hf:PATH, vllm:MODEL_OR_PATH, fake:echo, "
         "fake:fixed:TEXT")


@dataclass(frozen=True)
class Spec:
    """A parsed model spec: its kind and the rest (a model name, path or mode; may be empty)."""

    kind: Kind
    model: str

    def __str__(self) -> str:
        return f"{self.kind.name}:{self.model}" if self.model else self.kind.name


def parse_spec(spec: str) -> Spec:
    """`openai:gpt-4o-mini` -> Spec(openai, "gpt-4o-mini"); an unknown kind is an error."""
    name, _, model = spec.partition(":")
    kind = KINDS.get(name)
    if kind is None:
        raise CaiError(f"unknown model '{spec}'; use one of: {SPECS}")
    if kind.needs_model and not model:
        raise CaiError(f"{name} needs a model name: {name}:MODEL, e.g. {kind.needs_model}")
    return Spec(kind, model)


def load_backend(spec: str, *, base_urls: Sequence[str] = (), logprobs: bool = False,
                 lazy: bool = False, concurrency: int = 8,
                 constrain: str | None = None) -> Backend:
    """Make the backend a model spec names. `logprobs` asks for token log-probabilities;
    `lazy` (for dry runs) skips the API key check, since nothing will be sent; `concurrency`
    sizes HTTP connection pools; `constrain` says how an OpenAI-compatible server limits a
    reply to given options (llama.cpp's "grammar", vLLM's "guided-choice")."""
    parsed = parse_spec(spec)
    name, model = parsed.kind.name, parsed.model
    if constrain is not None and name != "openai":
        raise CaiError(f"--judge-constrain is for openai: servers; {spec} needs none (local "
                       "and hf: constrain the answer by themselves)")
    cls: Any = parsed.kind.backend_class()
    if name == "local":
        return cls(model_path=model or None, logprobs=logprobs)  # type: ignore[no-any-return]
    if name in ("openai", "anthropic"):
        extra = ({"pools_per_url": pools_for(concurrency), "constrain": constrain}
                 if name == "openai" else {})
        return cls(model, base_urls=base_urls, api_key="dry-run" if lazy else None,  # type: ignore[no-any-return]
                   **extra)
    if name == "fake":
        return cls(model or "echo")  # type: ignore[no-any-return]
    return cls(model)  # type: ignore[no-any-return]


def pools_for(concurrency: int) -> int:
    """About one HTTP connection pool per 16 requests in flight (see backends/openai.py)."""
    return max(1, -(-concurrency // 16))


def split_urls(values: Sequence[str]) -> list[str]:
    """`--base-url` may be repeated or comma-separated."""
    return [u.strip() for v in values for u in v.split(",") if u.strip()]
