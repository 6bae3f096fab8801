"""The dry-run estimator: stands in for a real backend and sends nothing."""

from __future__ import annotations

from collections.abc import Sequence

from cai.chat import Completion, Message, Sampling, Usage
from cai.models.backends.base import Backend, estimate_tokens


class DryRunBackend(Backend):
    """Answers every request with a reply of max_tokens tokens, and sends nothing.

    Token counts use the same four-characters-a-token estimate as the rate limiter, and
    outputs are taken at their max_tokens bound, so a dry run errs towards the high side.
    """

    def __init__(self, real: Backend):
        self.spec = real.spec
        self.default_sampling = real.default_sampling
        self.supports_logprobs = real.supports_logprobs
        self.max_top_logprobs = real.max_top_logprobs
        self.base_url = real.base_url

    async def complete(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        text = ("word " * sampling.max_tokens)[: 4 * sampling.max_tokens]
        return Completion(text, "length", Usage(estimate_tokens(messages), sampling.max_tokens),
                          self.spec)
