"""Credentials out of every command and URL cai writes down.

A `--base-url` may carry a user and password (`https://me:pw@host/v1`) or a key in its query
(`?api_key=...`); a command log copied into a dataset card would publish it. Every writer of
a command or a URL (command logs, the dataset card, the loop's history and log, reports)
passes its text through `redact_urls`, which puts `***` in their place and leaves the rest
as it was, so that the command still reads as the one that was run.
"""

from __future__ import annotations

import re
from typing import Any

HIDDEN = "***"
# A URL runs to the first space, quote or angle bracket: shlex quotes the URLs it joins.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# Query parameters named like a credential: api_key, access_token, X-Amz-Signature, password...
_SECRET_NAME = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential|session",
                          re.IGNORECASE)


def redact_url(url: str) -> str:
    """One URL with its user info and its secret-named query values replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        authority = HIDDEN + "@" + authority.rpartition("@")[2]
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        query = "&".join(_param(p) for p in query.split("&")) + hash_ + fragment
    return scheme + sep + authority + path + qmark + query


def _param(pair: str) -> str:
    name, eq, value = pair.partition("=")
    return f"{name}={HIDDEN}" if eq and value and _SECRET_NAME.search(name) else pair


def redact_urls(text: str) -> str:
    """Every URL in `text` redacted (see `redact_url`); text without one comes back as is."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def redact_all(value: Any) -> Any:
    """`redact_urls` over every string in a JSON-like value (a history event, a config)."""
    if isinstance(value, str):
        return redact_urls(value)
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_all(v) for v in value]
    return value
