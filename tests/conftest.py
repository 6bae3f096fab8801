"""Shared fixtures, and the tiers. Tests need nothing outside the repo: no network, no ../shared.

The tiers are markers (declared in pyproject.toml) given here by what a test needs, so that
nobody has to remember them: `local` (the embedded model), `train` (the train extra), `browser`
(Chromium), `server` (a server on 127.0.0.1, a stub or a real one). `slow` is set by hand on
what takes minutes. `make test-fast` leaves out the embedded model, training and the browser.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.helpers import CHROMIUM, LOCAL, TRAIN, cache_linked_to, has, missing

# A test that uses one of these fixtures needs what the marker names.
FIXTURE_MARKERS = {"browser": ("browser",), "local_model": ("local", "train"),
                   "server": ("server",)}
# A test (or one of its fixtures) that starts one of these itself needs a server.
SERVERS = ("StubServer", "free_port")
EXTRAS = {"local": (LOCAL, "the local extra"), "train": (TRAIN, "the train extra")}


def _starts_a_server(item: pytest.Item) -> bool:
    """Whether the test function, or a fixture it uses, names one of SERVERS in its code."""
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        funcs += [d.func for d in defs]
    return any(set(SERVERS) & set(getattr(getattr(f, "__code__", None), "co_names", ()))
               for f in funcs)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, markers in FIXTURE_MARKERS.items():
            if fixture in item.fixturenames:
                for marker in markers:
                    item.add_marker(marker)
        if _starts_a_server(item) and not item.get_closest_marker("server"):
            item.add_marker("server")
        for marker, (modules, extra) in EXTRAS.items():
            if item.get_closest_marker(marker) and (gone := missing(modules)):
                item.add_marker(pytest.mark.skip(reason=f"needs {extra} ({', '.join(gone)})"))


@pytest.fixture(scope="session", autouse=True)
def shared_models(tmp_path_factory: pytest.TempPathFactory):
    """The session's folder of converted models, and a cache around it for the session- and
    module-scoped fixtures, which run before a test's own cache is set: nothing a test does
    touches the user's real cache."""
    models = tmp_path_factory.mktemp("models")
    cache = cache_linked_to(tmp_path_factory.mktemp("session-cache"), models)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(cache))
        yield models


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory, shared_models: Path,
              monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of the test's own (XDG_CACHE_HOME, which subprocesses inherit): a response cached
    by another test would turn the requests a test counts into hits. Only the embedded model
    converted to a transformers checkpoint is shared, linked in, as it takes half a minute.
    A test that means to share a cache between runs passes its own XDG_CACHE_HOME."""
    cache = cache_linked_to(tmp_path_factory.mktemp("cache"), shared_models)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture(scope="session")
def local_model(shared_models: Path) -> Path:
    """The embedded model as a plain transformers checkpoint, converted once a session (about
    half a minute) into the shared models folder, where `--model local` finds it."""
    from cai.models.checkpoints import local_checkpoint

    return shared_models / local_checkpoint().name

@pytest.fixture
def write(tmp_path: Path):
    """Write a dedented text file into tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


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
