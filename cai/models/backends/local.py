"""`local`: the embedded SmolLM2-135M-Instruct (see `cai.models.embedded`), or any GGUF file
with `local:PATH.gguf`, run in-process with llama-cpp-python."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cai.chat import Completion, Message, Sampling, TokenLogprob, Usage
from cai.errors import CaiError
from cai.models.backends.base import Backend
from cai.models.embedded import LOCAL_SAMPLING, MODEL_NAME, gguf_path
from cai.models.identity import file_fingerprint


class LocalBackend(Backend):
    supports_logprobs = True
    max_top_logprobs = 20
    default_sampling = LOCAL_SAMPLING
    sends = Backend.sends | {"choices"}
    parallel = 1  # one llama.cpp worker (below)

    def __init__(self, *, model_path: str | Path | None = None, n_ctx: int = 4096,
                 logprobs: bool = False):
        self.spec = f"local:{model_path}" if model_path else "local"
        self.model_path = Path(model_path) if model_path else None
        self.model_name = self.model_path.name if self.model_path else MODEL_NAME
        self._identity: str | None = None
        self.n_ctx = n_ctx
        # Keeping logits for every position costs n_ctx x vocabulary floats: only when asked.
        self.logits_all = logprobs
        self._llm: Any = None
        # llama.cpp runs one sequence at a time; one worker serialises callers instead of
        # letting them contend for the same cores.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cai-local")

    def _model(self) -> Any:
        if self._llm is None:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise CaiError("the embedded model needs llama-cpp-python; install it with "
                               "`pip install 'cai-toolkit[local]'`") from None
            self._llm = Llama(
                model_path=str(self.model_path or gguf_path()),
                n_ctx=self.n_ctx,
                n_threads=os.cpu_count() or 1,  # the library's default is half the cores
                logits_all=self.logits_all,
                verbose=False,
            )
        return self._llm

    @property
    def identity(self) -> str:
        """The embedded model by name, any other file by its resolved path; each with a
        fingerprint of the file's content."""
        if self._identity is None:
            path = self.model_path or gguf_path()
            if not path.is_file():
                raise CaiError(f"{path}: no such GGUF file; give local:PATH.gguf")
            name = MODEL_NAME if self.model_path is None else str(path.resolve())
            self._identity = f"local:{name}@{file_fingerprint(path)[:16]}"
        return self._identity

    def load(self) -> None:
        """Load the model now rather than on the first request."""
        self._worker.submit(self._model).result()

    async def complete(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self._complete, list(messages), sampling)

    def _complete(self, messages: list[Message], sampling: Sampling) -> Completion:
        llm = self._model()
        if sampling.choices:
            return self._choose(llm, messages, sampling.choices)
        want_logprobs = sampling.top_logprobs > 0
        if want_logprobs and not self.logits_all:
            raise CaiError("this local model was loaded without logprobs; load it with "
                           "logprobs=True")
        out = llm.create_chat_completion(
            messages=[m.to_dict() for m in messages],
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            stop=list(sampling.stop) or None,
            seed=sampling.seed,
            repeat_penalty=sampling.repeat_penalty or 1.0,
            logprobs=want_logprobs or None,
            top_logprobs=min(sampling.top_logprobs, self.max_top_logprobs) if want_logprobs
            else None,
        )
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Completion(
            text=(choice["message"].get("content") or "").strip(),
            finish_reason=choice.get("finish_reason") or "stop",
            usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
            model=self.model_name,
            logprobs=_logprobs(choice.get("logprobs")) if want_logprobs else None,
        )

    def _choose(self, llm: Any, messages: list[Message], options: Sequence[str]) -> Completion:
        """Score each option as the reply's first token, instead of sampling a reply.

        The prompt is built as `create_chat_completion` builds it (the GGUF's chat template),
        evaluated once, and each option's probability is read from the next-token
        distribution: with and without a leading space, which the tokenizer may prefer.
        """
        import numpy as np
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise CaiError(f"{self.spec} has no chat template in its GGUF file")
        formatter = Jinja2ChatFormatter(
            template=template, eos_token=llm._model.token_get_text(llm.token_eos()),
            bos_token=llm._model.token_get_text(llm.token_bos()))
        prompt = formatter(messages=[m.to_dict() for m in messages]).prompt  # type: ignore[misc]
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llm.reset()  # the next eval starts from an empty context, whatever ran before
        llm.eval(tokens)
        logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        logprobs = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
        scores = {}
        for option in options:
            ids = {llm.tokenize(v.encode("utf-8"), add_bos=False, special=False)[0]
                   for v in (option, " " + option)}
            scores[option] = float(np.logaddexp.reduce([logprobs[i] for i in ids]))
        best = max(scores, key=scores.__getitem__)
        return Completion(text=best, finish_reason="stop", usage=Usage(len(tokens), 1),
                          model=self.model_name,
                          logprobs=(TokenLogprob(best, scores[best], scores),))

    async def aclose(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
        self._llm = None


def _logprobs(block: dict[str, Any] | None) -> tuple[TokenLogprob, ...] | None:
    if not block or not block.get("content"):
        return None
    return tuple(
        # llama.cpp hands back numpy float32s; plain floats keep records and cache JSON-able.
        TokenLogprob(t["token"], float(t["logprob"]),
                     {a["token"]: float(a["logprob"]) for a in t.get("top_logprobs") or ()})
        for t in block["content"]
    )
