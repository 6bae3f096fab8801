"""`cai review`: a local page for labelling pairs blind, on Starlette and uvicorn.

The page and its API share one origin. The server binds to 127.0.0.1 unless told otherwise,
refuses requests whose Host header names another address (against DNS rebinding), sends no
CORS headers (so another page in the same browser can read nothing, not even the token), and
takes a label only with the per-run token in the `X-Review-Token` header, which a cross-origin
form cannot set. Every response forbids framing (against clickjacking) and allows scripts
from the server alone. A label is a small JSON object of two strings, once per pair and
reviewer: anything else is refused with a 4xx and nothing is written. Labelling is blind:
the API never says which reply was chosen or what the judge thought.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.errors import CaiError
from cai.review.pairs import CHOICES, Pair, append, labels, paths, shown_order

STATIC = Path(__file__).with_name("static")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANY = ("0.0.0.0", "::")  # every address of the machine
MAX_BODY = 4096  # bytes: a label is a pair id and a choice
EXPECTED = 'expected JSON {"pair_id": string, "choice": string}'
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


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
        """Append one label; a bad one raises ValueError, a repeat Refused (nothing written).
        Nothing awaits between the check and the append, so two requests cannot both pass."""
        if not isinstance(pair_id, str) or not isinstance(choice, str):
            raise ValueError(EXPECTED)
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}")
        if pair_id not in {p.id for p in self.sample}:
            raise ValueError(f"unknown pair '{pair_id:.80}'")
        if pair_id in self.mine():
            raise Refused(f"pair '{pair_id}' is labelled already; undo it first to change it")
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


class Refused(Exception):
    """A well-formed label the server will not take (the pair is labelled already)."""


def host_name(header: str) -> str:
    """The host of a Host header, without its port; IPv6 addresses without brackets."""
    from urllib.parse import urlsplit

    try:
        return (urlsplit(f"//{header}").hostname or "").lower()
    except ValueError:  # a malformed header: no host
        return ""


def make_app(review: Review, allowed_hosts: list[str]) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    allowed = {h.lower() for h in allowed_hosts}

    async def guard(request: Request, call_next: Any) -> Response:
        """Only our own host names (against DNS rebinding); never framed; scripts from here."""
        if host_name(request.headers.get("host", "")) not in allowed:
            response: Response = PlainTextResponse("Invalid host header", status_code=400)
        else:
            response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    def refused(request: Request) -> JSONResponse | None:
        if not secrets.compare_digest(request.headers.get("x-review-token", ""), review.token):
            return JSONResponse({"error": "missing or wrong X-Review-Token"}, status_code=403)
        return None

    async def body_of(request: Request) -> Any:
        """The request's JSON, read no further than MAX_BODY bytes."""
        import json

        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            raise OverflowError
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_BODY:
                raise OverflowError
        try:
            return json.loads(data)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            raise ValueError(EXPECTED) from None

    async def page(request: Request) -> FileResponse:
        return FileResponse(STATIC / "review.html")

    async def next_pair(request: Request) -> JSONResponse:
        return JSONResponse(review.next())

    async def label(request: Request) -> JSONResponse:
        if (no := refused(request)) is not None:
            return no
        try:
            body = await body_of(request)
            if not isinstance(body, dict):
                raise ValueError(EXPECTED)
            saved = review.label(body.get("pair_id"), body.get("choice"))
        except OverflowError:
            return JSONResponse({"error": f"a label is at most {MAX_BODY} bytes"},
                                status_code=413)
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        except Refused as e:
            return JSONResponse({"error": str(e)}, status_code=409)
        return JSONResponse({"saved": saved})

    async def undo(request: Request) -> JSONResponse:
        if (no := refused(request)) is not None:
            return no
        return JSONResponse({"undone": review.undo()})

    return Starlette(routes=[
        Route("/", page), Route("/api/next", next_pair),
        Route("/api/label", label, methods=["POST"]), Route("/api/undo", undo, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)])


def check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise CaiError(f"cannot serve on {host}:{port} ({e.strerror}); pass another "
                           "--port") from None


def page_url(host: str, port: int) -> str:
    """The URL the command prints: on every address, the loopback one."""
    shown = "127.0.0.1" if host in ANY else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def host_names(host: str) -> list[str]:
    """The Host header names the server answers: the address it serves on, loopback's names
    where it serves on loopback or on every address, and there the machine's own names."""
    names = [host]
    if host in LOOPBACK or host in ANY:
        names += LOOPBACK
    if host in ANY:
        name = socket.gethostname()
        names += [name, socket.getfqdn()]
        with contextlib.suppress(OSError):  # a name that does not resolve: no addresses
            names += [str(a[4][0]) for a in socket.getaddrinfo(name, None)]
    return list(dict.fromkeys(names))


def serve(review: Review, host: str, port: int) -> None:
    import uvicorn

    app = make_app(review, host_names(host))
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                  access_log=False)).run()
