"""MkDocs hook for the generated CLI reference.

mkdocs-click 0.9 prints click 8.3's marker for "no default given" as `Sentinel.UNSET`; the
reference shows an empty Default cell instead.
"""

from __future__ import annotations

from typing import Any


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    return html.replace("<code>Sentinel.UNSET</code>", "").replace("Sentinel.UNSET", "")
