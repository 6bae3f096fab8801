"""`cai review`: a local page for labelling pairs blind, on Starlette and uvicorn.

The page and its API share one origin. The server binds to 127.0.0.1 unless told otherwise,
refuses requests whose Host header names another address (against DNS rebinding), sends no
CORS headers (so another page in the same browser can read nothing, not even the token), and
takes a label only with the per-run token in the `X-Review-Token` header, which a cross-origin
form cannot set. Labelling is blind: the API never says which reply was chosen or what the
judge thought.
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.errors import CaiError
from cai.review.pairs import CHOICES, Pair, append, labels, paths, shown_order

STATIC = Path(__file__).with_name("static")


@dataclass
class Review:
    """One reviewer's session over a sample of pairs."""

    target: Path
    sample: list[Pair]
    reviewer: str
    seed: int
    questions: dict[str, str]  # principle id -> its judge question
    default_question: str
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def log(self) -> Path:
        return paths(self.target).reviews

    def mine(self) -> dict[str, dict[str, Any]]:
        return {pid: r for (who, pid), r in labels(self.log).items() if who == self.reviewer}

    def next(self) -> dict[str, Any]:
        done = self.mine()
        progress = {"done": sum(p.id in done for p in self.sample), "total": len(self.sample)}
        todo = next((p for p in self.sample if p.id not in done), None)
        if todo is None:
            return {"token": self.token}  # the sample is done
        first, second = (todo.x, todo.y) if shown_order(
            todo.id, self.reviewer, self.seed) == "xy" else (todo.y, todo.x)
        question = next((self.questions[p] for p in todo.principles if p in self.questions),
                        self.default_question)
        return {"pair_id": todo.id, "prompt": todo.prompt, "a": first, "b": second,
                "question": question, "progress": progress, "token": self.token}

    def label(self, pair_id: Any, choice: Any) -> dict[str, Any]:
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}")
        if pair_id not in {p.id for p in self.sample}:
            raise ValueError(f"unknown pair '{pair_id}'")
        order = shown_order(pair_id, self.reviewer, self.seed)
        return append(self.log, {"event": "label", "pair_id": pair_id,
                                 "reviewer": self.reviewer, "order": order, "choice": choice})

    def undo(self) -> dict[str, Any] | None:
        """Take back this reviewer's latest standing label."""
        mine = self.mine()
        if not mine:
            return None
        last = max(mine.values(), key=lambda r: r["_line"])
        return append(self.log, {"event": "undo", "pair_id": last["pair_id"],
                                 "reviewer": self.reviewer})


def make_app(review: Review, allowed_hosts: list[str]) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def refused(request: Request) -> JSONResponse | None:
        if not secrets.compare_digest(request.headers.get("x-review-token", ""), review.token):
            return JSONResponse({"error": "missing or wrong X-Review-Token"}, status_code=403)
        return None

    async def page(request: Request) -> FileResponse:
        return FileResponse(STATIC / "review.html")

    async def next_pair(request: Request) -> JSONResponse:
        return JSONResponse(review.next())

    async def label(request: Request) -> JSONResponse:
        if (no := refused(request)) is not None:
            return no
        try:
            body = await request.json()
            saved = review.label(body.get("pair_id"), body.get("choice"))
        except (ValueError, AttributeError) as e:
            return JSONResponse({"error": str(e) or "expected JSON {pair_id, choice}"},
                                status_code=400)
        return JSONResponse({"saved": saved})

    async def undo(request: Request) -> JSONResponse:
        if (no := refused(request)) is not None:
            return no
        return JSONResponse({"undone": review.undo()})

    return Starlette(routes=[
        Route("/", page), Route("/api/next", next_pair),
        Route("/api/label", label, methods=["POST"]), Route("/api/undo", undo, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)])


def check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise CaiError(f"cannot serve on {host}:{port} ({e.strerror}); pass another "
                           "--port") from None


def serve(review: Review, host: str, port: int) -> None:
    import uvicorn

    hosts = [host] + (["localhost"] if host == "127.0.0.1" else [])
    app = make_app(review, hosts)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                  access_log=False)).run()
