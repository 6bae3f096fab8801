"""The stand-in's provider batch endpoints: OpenAI's Batch API and Anthropic's Message Batches.

Neither service can be reached from here, so tests run against this instead. It follows the
documented endpoints and file formats, checks every request line against the documented
schema and limits (a bad file is a 400, as from the real APIs), ends a batch at once or after
some status polls, and returns results shuffled, with a set share of errored and expired
entries among them. It is not OpenAI or Anthropic: only the shapes are.

    OpenAI     POST /v1/files (multipart, purpose=batch)   GET /v1/files/{id}/content
               POST /v1/batches                             GET /v1/batches/{id}
    Anthropic  POST /v1/messages/batches                    GET /v1/messages/batches/{id}
               GET /v1/messages/batches/{id}/results (JSON Lines)
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

OPENAI_MAX_LINES = 50_000
OPENAI_MAX_BYTES = 200_000_000
OPENAI_ENDPOINT = "/v1/chat/completions"
ANTHROPIC_MAX_REQUESTS = 100_000
ANTHROPIC_MAX_BYTES = 256_000_000
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # Anthropic's documented pattern

# (provider, request body) -> the response body a live request would have had
Answer = Callable[[str, dict[str, Any]], dict[str, Any]]
Response = tuple[int, bytes, str]  # status, body, content type


class Rejected(Exception):
    """A request the real API would refuse; becomes a 4xx with this message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _now_iso(offset: float = 0.0) -> str:
    moment = datetime.fromtimestamp(time.time() + offset, timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def _json(status: int, payload: Any) -> Response:
    return status, json.dumps(payload).encode(), "application/json"


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def check_openai_file(data: bytes) -> list[dict[str, Any]]:
    """The lines of a Batch API input file, or Rejected naming the first bad line."""
    if len(data) > OPENAI_MAX_BYTES:
        raise Rejected(f"file is {len(data)} bytes; the limit is {OPENAI_MAX_BYTES}")
    lines = []
    for n, text in enumerate(data.decode().splitlines(), start=1):
        try:
            line = json.loads(text)
        except ValueError:
            raise Rejected(f"line {n}: not valid JSON") from None
        problem = _openai_line_problem(line)
        if problem:
            raise Rejected(f"line {n}: {problem}")
        lines.append(line)
    if not lines:
        raise Rejected("the file has no requests")
    if len(lines) > OPENAI_MAX_LINES:
        raise Rejected(f"{len(lines)} requests; a batch file holds at most {OPENAI_MAX_LINES}")
    ids = [line["custom_id"] for line in lines]
    if len(set(ids)) != len(ids):
        raise Rejected("custom_id values must be unique within a batch file")
    models = {line["body"]["model"] for line in lines}
    if len(models) > 1:
        raise Rejected(f"one model per batch file; this one has {sorted(models)}")
    return lines


def _openai_line_problem(line: Any) -> str | None:
    if not isinstance(line, dict):
        return "each line must be a JSON object"
    if set(line) - {"custom_id", "method", "url", "body"}:
        return f"unknown keys {sorted(set(line) - {'custom_id', 'method', 'url', 'body'})}"
    if not isinstance(line.get("custom_id"), str) or not line["custom_id"]:
        return "custom_id must be a non-empty string"
    if line.get("method") != "POST":
        return "method must be POST"
    if line.get("url") != OPENAI_ENDPOINT:
        return f"url must be {OPENAI_ENDPOINT}"
    body = line.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return "body.model is required"
    return _messages_problem(body.get("messages"), "body", roles=("system", "user", "assistant"))


def _messages_problem(messages: Any, where: str, roles: tuple[str, ...]) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"{where}.messages must be a non-empty list"
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in roles or "content" not in m:
            return f"{where}.messages: each needs a role in {list(roles)} and content"
    return None


def check_anthropic_requests(body: bytes) -> list[dict[str, Any]]:
    """The requests of a Message Batches create call, or Rejected naming the first bad one."""
    if len(body) > ANTHROPIC_MAX_BYTES:
        raise Rejected(f"request is {len(body)} bytes; the limit is {ANTHROPIC_MAX_BYTES}", 413)
    requests = json.loads(body).get("requests")
    if not isinstance(requests, list) or not requests:
        raise Rejected("requests: must be a non-empty list")
    if len(requests) > ANTHROPIC_MAX_REQUESTS:
        raise Rejected(f"requests: at most {ANTHROPIC_MAX_REQUESTS} per batch")
    seen: set[str] = set()
    for n, r in enumerate(requests):
        problem = _anthropic_request_problem(r, seen)
        if problem:
            raise Rejected(f"requests.{n}.{problem}")
    return requests


def _anthropic_request_problem(r: Any, seen: set[str]) -> str | None:
    if not isinstance(r, dict) or set(r) != {"custom_id", "params"}:
        return "each request has exactly custom_id and params"
    cid = r["custom_id"]
    if not isinstance(cid, str) or not CUSTOM_ID.match(cid):
        return f"custom_id: must match {CUSTOM_ID.pattern}"
    if cid in seen:
        return f"custom_id: {cid!r} is used twice"
    seen.add(cid)
    p = r["params"]
    if not isinstance(p, dict) or not isinstance(p.get("model"), str):
        return "params.model: required"
    if not isinstance(p.get("max_tokens"), int) or p["max_tokens"] < 1:
        return "params.max_tokens: a positive integer is required"
    return _messages_problem(p.get("messages"), "params", roles=("user", "assistant"))


def multipart_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    """The fields of a multipart/form-data body, by name."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields[str(name)] = payload if isinstance(payload, bytes) else b""
    return fields


@dataclass
class StubBatch:
    id: str
    provider: str
    requests: list[tuple[str, dict[str, Any]]]  # (custom_id, body or params)
    polls_left: int
    created: float = field(default_factory=time.time)
    input_file_id: str = ""
    ended: bool = False
    outcome: dict[str, str] = field(default_factory=dict)  # custom_id -> ok/errored/expired
    output_file_id: str | None = None
    error_file_id: str | None = None
    results: bytes = b""  # Anthropic's results file


@dataclass
class BatchStore:
    """Files and batches of one stand-in server, and how its batches turn out."""

    polls: int = 0  # status reads that say "in progress" before a batch ends
    error_share: float = 0.0  # entries that come back errored
    expire_share: float = 0.0  # entries that come back expired
    error_status: int = 400  # 400: invalid request (for good); 429 or 5xx: worth retrying
    seed: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, StubBatch] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = [
            ("POST", re.compile(r"/messages/batches$"), self._anthropic_create),
            ("GET", re.compile(r"/messages/batches/([^/]+)$"), self._anthropic_retrieve),
            ("GET", re.compile(r"/messages/batches/([^/]+)/results$"), self._anthropic_results),
            ("POST", re.compile(r"/files$"), self._upload),
            ("GET", re.compile(r"/files/([^/]+)/content$"), self._content),
            ("POST", re.compile(r"/batches$"), self._openai_create),
            ("GET", re.compile(r"/batches/([^/]+)$"), self._openai_retrieve),
        ]

    def respond(self, method: str, path: str, headers: dict[str, str], body: bytes,
                origin: str, answer: Answer) -> Response | None:
        """The response to a batch endpoint request, or None when `path` is not one."""
        path = path.split("?", 1)[0]
        if "/batches" not in path and "/files" not in path:  # the common case, at once
            return None
        for verb, pattern, route in self._routes:
            m = pattern.search(path)
            if m and verb == method:
                self._request = (path, headers, body, origin, answer)
                try:
                    return route(*m.groups())
                except Rejected as e:
                    return self._rejected(path, e)
        return None

    def _rejected(self, path: str, e: Rejected) -> Response:
        kind = "invalid_request_error" if e.status != 404 else "not_found_error"
        if "/messages/" in path:
            return _json(e.status, {"type": "error", "error": {"type": kind, "message": str(e)}})
        return _json(e.status, {"error": {"message": str(e), "type": kind, "param": None,
                                          "code": None}})

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{self._rng.getrandbits(64):016x}"

    def _batch(self, batch_id: str, provider: str) -> StubBatch:
        batch = self.batches.get(batch_id)
        if batch is None or batch.provider != provider:
            raise Rejected(f"no batch {batch_id}", 404)
        return batch

    def _poll(self, batch: StubBatch) -> None:
        """One status read: the batch runs on for `polls` reads, then ends."""
        if batch.ended:
            return
        if batch.polls_left > 0:
            batch.polls_left -= 1
            return
        batch.ended = True
        for cid, _ in batch.requests:
            r = self._rng.random()
            batch.outcome[cid] = ("expired" if r < self.expire_share else
                                  "errored" if r < self.expire_share + self.error_share else "ok")

    def _outcomes(self, batch: StubBatch, provider: str) -> list[tuple[str, str, Any]]:
        """Each entry's (custom_id, kind, answer or the handler's reason for refusing it)."""
        out = []
        for cid, request in batch.requests:
            kind = batch.outcome[cid]
            value: Any = None
            if kind == "ok":
                try:
                    value = self._request[4](provider, request)
                except Exception as e:  # a scripted handler refuses a request, like a 400
                    kind, value = "refused", str(e)
                    batch.outcome[cid] = "errored"
            out.append((cid, kind, value))
        return out

    # ------------------------------------------------------------------ OpenAI

    def _upload(self) -> Response:
        _, headers, body, _, _ = self._request
        fields = multipart_fields(headers.get("content-type", ""), body)
        if fields.get("purpose") != b"batch" or "file" not in fields:
            raise Rejected("send a file with purpose=batch")
        check_openai_file(fields["file"])
        file_id = self._new_id("file-")
        self.files[file_id] = fields["file"]
        return _json(200, {"id": file_id, "object": "file", "bytes": len(fields["file"]),
                           "created_at": int(time.time()), "filename": "batch.jsonl",
                           "purpose": "batch", "status": "processed"})

    def _content(self, file_id: str) -> Response:
        if file_id not in self.files:
            raise Rejected(f"no file {file_id}", 404)
        return 200, self.files[file_id], "application/octet-stream"

    def _openai_create(self) -> Response:
        args = json.loads(self._request[2])
        if args.get("endpoint") != OPENAI_ENDPOINT or args.get("completion_window") != "24h":
            raise Rejected(f"endpoint must be {OPENAI_ENDPOINT}, completion_window 24h")
        data = self.files.get(args.get("input_file_id", ""))
        if data is None:
            raise Rejected(f"no file {args.get('input_file_id')}", 404)
        lines = check_openai_file(data)
        batch = StubBatch(self._new_id("batch_"), "openai",
                          [(line["custom_id"], line["body"]) for line in lines], self.polls,
                          input_file_id=args["input_file_id"])
        self.batches[batch.id] = batch
        return _json(200, self._openai_view(batch))

    def _openai_retrieve(self, batch_id: str) -> Response:
        batch = self._batch(batch_id, "openai")
        self._poll(batch)
        if batch.ended and batch.output_file_id is None and batch.error_file_id is None:
            self._openai_finish(batch)
        return _json(200, self._openai_view(batch))

    def _openai_finish(self, batch: StubBatch) -> None:
        out: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for cid, kind, value in self._outcomes(batch, "openai"):
            line: dict[str, Any] = {"id": self._new_id("batch_req_"), "custom_id": cid,
                                    "response": None, "error": None}
            if kind == "expired":
                line["error"] = {"code": "batch_expired", "message": "This request could not "
                                 "be executed before the completion window expired."}
            elif kind == "ok":
                line["response"] = {"status_code": 200, "request_id": line["id"], "body": value}
            else:
                status = self.error_status if kind == "errored" else 400
                line["response"] = {"status_code": status, "request_id": line["id"], "body": {
                    "error": {"message": value or "stand-in error for this request",
                              "type": "invalid_request_error" if status == 400 else "server_error",
                              "param": None, "code": None}}}
            (out if kind == "ok" else errors).append(line)
        for lines, attr in ((out, "output_file_id"), (errors, "error_file_id")):
            if lines:
                self._rng.shuffle(lines)  # results come back out of order
                file_id = self._new_id("file-")
                self.files[file_id] = _jsonl(lines)
                setattr(batch, attr, file_id)

    def _openai_view(self, batch: StubBatch) -> dict[str, Any]:
        expired = sum(1 for k in batch.outcome.values() if k == "expired")
        status = ("expired" if expired else "completed") if batch.ended else (
            "in_progress" if batch.polls_left < self.polls else "validating")
        failed = sum(1 for k in batch.outcome.values() if k != "ok")
        n = len(batch.requests)
        return {
            "id": batch.id, "object": "batch", "endpoint": OPENAI_ENDPOINT, "errors": None,
            "input_file_id": batch.input_file_id, "completion_window": "24h", "status": status,
            "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
            "created_at": int(batch.created), "expires_at": int(batch.created) + 86400,
            "completed_at": int(time.time()) if status == "completed" else None,
            "expired_at": int(time.time()) if status == "expired" else None,
            "request_counts": {"total": n, "completed": n - failed if batch.ended else 0,
                               "failed": failed},
            "metadata": None,
        }

    # ------------------------------------------------------------------ Anthropic

    def _anthropic_create(self) -> Response:
        requests = check_anthropic_requests(self._request[2])
        batch = StubBatch(self._new_id("msgbatch_"), "anthropic",
                          [(r["custom_id"], r["params"]) for r in requests], self.polls)
        self.batches[batch.id] = batch
        return _json(200, self._anthropic_view(batch))

    def _anthropic_retrieve(self, batch_id: str) -> Response:
        batch = self._batch(batch_id, "anthropic")
        self._poll(batch)
        if batch.ended and not batch.results:
            self._anthropic_finish(batch)
        return _json(200, self._anthropic_view(batch))

    def _anthropic_results(self, batch_id: str) -> Response:
        batch = self._batch(batch_id, "anthropic")
        if not batch.ended:
            raise Rejected(f"batch {batch_id} is still in progress")
        return 200, batch.results, "application/x-jsonl"

    def _anthropic_finish(self, batch: StubBatch) -> None:
        lines = []
        for cid, kind, value in self._outcomes(batch, "anthropic"):
            if kind == "expired":
                result: dict[str, Any] = {"type": "expired"}
            elif kind == "ok":
                result = {"type": "succeeded", "message": value}
            else:
                invalid = kind == "refused" or self.error_status == 400
                result = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "invalid_request_error" if invalid else "api_error",
                    "message": value or "stand-in error for this request"}}}
            lines.append({"custom_id": cid, "result": result})
        self._rng.shuffle(lines)  # results come back out of order
        batch.results = _jsonl(lines)

    def _anthropic_view(self, batch: StubBatch) -> dict[str, Any]:
        counts = {"processing": 0 if batch.ended else len(batch.requests), "succeeded": 0,
                  "errored": 0, "canceled": 0, "expired": 0}
        for kind in batch.outcome.values():
            counts[{"ok": "succeeded"}.get(kind, kind)] += 1
        path, origin = self._request[0], self._request[3]
        if not path.endswith(batch.id):
            path = f"{path}/{batch.id}"
        return {
            "id": batch.id, "type": "message_batch",
            "processing_status": "ended" if batch.ended else "in_progress",
            "request_counts": counts, "created_at": _now_iso(batch.created - time.time()),
            "expires_at": _now_iso(batch.created - time.time() + 86400),
            "ended_at": _now_iso() if batch.ended else None, "cancel_initiated_at": None,
            "archived_at": None,
            "results_url": f"{origin}{path}/results" if batch.ended else None,
        }
