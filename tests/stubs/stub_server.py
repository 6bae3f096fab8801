"""A local stand-in for an OpenAI-compatible server, for tests, benchmarks and dry runs.

It speaks the documented Chat Completions format over real HTTP on 127.0.0.1, answers at
once or after a set latency, and injects faults at set rates: 429 with Retry-After, 500, 503,
timeouts, connection resets, malformed JSON, empty choices and truncated bodies. Every request
is logged, so tests can count what was really sent. It is not OpenAI: only the shapes are.

    python -m tests.stubs.stub_server --port 8011 --latency 0.5 --fault-rate 0.2 \
        --log requests.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.stubs.stub_batches import BatchStore

FAULTS = ("429", "500", "503", "timeout", "reset", "malformed", "empty", "truncated")

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def count_tokens(text: str) -> int:
    """The stand-in's tokenizer: words and punctuation marks, a rough likeness of BPE counts."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def fill_reply(request: dict[str, Any]) -> dict[str, Any]:
    """Answer with exactly max_tokens tokens, as a long generation cut at its limit does."""
    n = int(request.get("max_tokens") or 16)
    return {"content": " ".join(["word"] * n), "finish_reason": "length"}


def default_reply(request: dict[str, Any]) -> dict[str, Any]:
    """Answer with the first words of the last message; logprobs favour "A" when asked."""
    last = request["messages"][-1]["content"]
    words = last.split()[: min(8, int(request.get("max_tokens") or 8))]
    text = "ok: " + " ".join(words)
    out: dict[str, Any] = {"content": text}
    if request.get("logprobs"):
        out["logprobs"] = [("A", {"A": -0.4, "B": -1.2})]
    return out


def completion_body(request: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions response; `reply` holds content and optional [(token, top)] logprobs."""
    text = reply["content"]
    prompt_tokens = sum(count_tokens(str(m.get("content", ""))) + 4 for m in request["messages"])
    choice: dict[str, Any] = {
        "index": 0, "finish_reason": reply.get("finish_reason", "stop"),
        "message": {"role": "assistant", "content": text}, "logprobs": None,
    }
    if reply.get("logprobs"):
        choice["logprobs"] = {"content": [
            {"token": tok, "logprob": top.get(tok, -0.1), "bytes": None,
             "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top.items()]}
            for tok, top in reply["logprobs"]]}
    return {
        "id": f"chatcmpl-{random.getrandbits(48):x}", "object": "chat.completion",
        "created": int(time.time()), "model": request.get("model", "stub"),
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": count_tokens(text),
                  "total_tokens": prompt_tokens + count_tokens(text)},
    }


def message_body(request: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages API response for the same reply."""
    text = reply["content"]
    prompt = [request.get("system") or ""] + [str(m.get("content", ""))
                                              for m in request["messages"]]
    stop = {"length": "max_tokens"}.get(reply.get("finish_reason", "stop"), "end_turn")
    return {
        "id": f"msg_{random.getrandbits(48):x}", "type": "message", "role": "assistant",
        "model": request.get("model", "stub"), "content": [{"type": "text", "text": text}],
        "stop_reason": reply.get("stop_reason", stop), "stop_sequence": None,
        "usage": {"input_tokens": sum(count_tokens(p) + 4 for p in prompt),
                  "output_tokens": count_tokens(text)},
    }


@dataclass
class StubServer:
    """Serve in a background thread: `with StubServer(...) as s: ... s.url ...`."""

    latency: float = 0.0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    handler: Handler = default_reply
    retry_after: float = 0.05
    hang: float = 30.0  # how long a "timeout" fault keeps the client waiting
    seed: int = 0
    log_path: str | None = None
    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each completion request arrived
    headers: list[dict[str, str]] = field(default_factory=list)
    faults_sent: dict[str, int] = field(default_factory=dict)
    batches: BatchStore = field(default_factory=BatchStore)  # the provider batch endpoints

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._log = open(self.log_path, "a", encoding="utf-8") if self.log_path else None  # noqa: SIM115

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """The base URL for Anthropic's SDK, which adds /v1 itself."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def completions(self) -> int:
        return len(self.requests)

    # -- HTTP, just enough of it: keep-alive, Content-Length bodies.
    async def _serve_client(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in
                           (h.split(":", 1) for h in lines[1:] if ":" in h)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self._headers = headers
                if not await self._respond(method, path, body, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError,
                asyncio.CancelledError):
            pass  # the client went away, or the server is shutting down mid-"timeout"
        finally:
            writer.close()

    async def _respond(self, method: str, path: str, body: bytes,
                       writer: asyncio.StreamWriter) -> bool:
        if method == "GET" and path.endswith("/models"):
            self._send(writer, 200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
            return True
        batch = self.batches.respond(method, path, self._headers, body, self.root_url,
                                     self._batch_answer)
        if batch is not None:
            self._send_raw(writer, batch[0], batch[1], {"content-type": batch[2]})
            return True
        if method == "POST" and path.endswith("/chat/completions"):
            build = completion_body
        elif method == "POST" and path.endswith("/v1/messages"):
            build = message_body  # Anthropic's Messages API
        else:
            self._send(writer, 404, {"error": {"message": f"no route {method} {path}"}})
            return True
        request = json.loads(body)
        self.requests.append(request)
        self.times.append(time.monotonic())
        self.headers.append(self._headers)
        if self._log:
            self._log.write(json.dumps(request) + "\n")
            self._log.flush()
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self._rng.choice(self.faults) if self._rng.random() < self.fault_rate else None
        if fault:
            self.faults_sent[fault] = self.faults_sent.get(fault, 0) + 1
        if fault == "429":
            self._send(writer, 429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                       {"retry-after": str(self.retry_after)})
        elif fault in ("500", "503"):
            self._send(writer, int(fault), {"error": {"message": "server error"}})
        elif fault == "timeout":
            await asyncio.sleep(self.hang)
            return False
        elif fault == "reset":
            writer.transport.abort()
            return False
        elif fault == "malformed":
            self._send_raw(writer, 200, b'{"id": "x", "choices": [ {"mess')
        elif fault == "empty":
            empty = build(request, {"content": ""})
            self._send(writer, 200, {**empty, "choices": [], "content": []})
        elif fault == "truncated":
            data = json.dumps(build(request, self.handler(request))).encode()
            writer.write(self._head(200, len(data)) + data[: len(data) // 2])
            await writer.drain()
            writer.transport.abort()
            return False
        else:
            try:
                reply = self.handler(request)
            except Exception as e:  # a scripted handler can refuse a request with a 400
                self._send(writer, 400, {"error": {"message": str(e), "type": "invalid_request"}})
                return True
            self._send(writer, 200, build(request, reply))
        await writer.drain()
        return True

    def _batch_answer(self, provider: str, request: dict[str, Any]) -> dict[str, Any]:
        """A batch entry's response body, from the same handler as live requests."""
        build = message_body if provider == "anthropic" else completion_body
        return build(request, self.handler(request))

    def _head(self, status: int, length: int, extra: dict[str, str] | None = None) -> bytes:
        headers = {"content-type": "application/json", "content-length": str(length),
                   **(extra or {})}
        return (f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                + "\r\n").encode()

    def _send_raw(self, writer: asyncio.StreamWriter, status: int, data: bytes,
                  extra: dict[str, str] | None = None) -> None:
        writer.write(self._head(status, len(data), extra) + data)

    def _send(self, writer: asyncio.StreamWriter, status: int, payload: dict[str, Any],
              extra: dict[str, str] | None = None) -> None:
        self._send_raw(writer, status, json.dumps(payload).encode(), extra)

    # -- running it
    async def serve(self) -> None:
        server = await asyncio.start_server(self._serve_client, "127.0.0.1", self.port,
                                            backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._ready.set()
        async with server:
            await self._stopping.wait()

    def __enter__(self) -> StubServer:
        self._thread = threading.Thread(target=asyncio.run, args=(self.serve(),), daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(5)
        if self._log:
            self._log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", default=None, help="append each request as a JSON line here")
    parser.add_argument("--fill", action="store_true", help="answer with max_tokens tokens")
    a = parser.parse_args()
    server = StubServer(latency=a.latency, fault_rate=a.fault_rate,
                        faults=tuple(a.faults.split(",")), seed=a.seed, log_path=a.log,
                        port=a.port, handler=fill_reply if a.fill else default_reply)
    print(f"serving on 127.0.0.1:{a.port}", flush=True)
    asyncio.run(server.serve())


if __name__ == "__main__":
    main()
