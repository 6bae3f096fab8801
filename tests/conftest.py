"""Shared fixtures. Tests need nothing outside the repo: no network, no ../shared."""

from __future__ import annotations

import importlib.util
import socket
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_local = pytest.mark.skipif(not (has("llama_cpp")), reason="needs the local extra")


@pytest.fixture
def write(tmp_path: Path):
    """Write a dedented text file into tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


MINIMAL = """name: tiny
version: "0.1"
description: A tiny constitution for tests.
principles:
  - id: alpha
    critique: Say what is wrong.
    revision: Fix it.
    judge: Which is better?
    weight: 3
  - id: beta
    critique: Point out rudeness.
    revision: Make it polite.
"""


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser():
    """Debian's Chromium, headless, driven by Playwright (which cannot download its own
    browser here). Skips where either is missing; CI installs Chromium in .ci/run.

    One per test: Playwright's sync API keeps an event loop running while it is open, which
    would break the asyncio.run of any test after it."""
    if not has("playwright"):
        pytest.skip("needs playwright (the dev extra)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def offline_page(browser):
    """A new page that may load `file:` URLs only: an offline report must fetch nothing."""
    page = browser.new_page()
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith(
        "file:") else route.continue_())
    return page
