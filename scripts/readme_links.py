"""Check that every relative link in README.md resolves: the file exists and, for a link to a
Markdown heading, the heading does too (`make docs` runs this; mkdocs checks the links inside
docs/ itself, but README.md lies outside the site)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """A heading's anchor, as GitHub and mkdocs' toc both make it for cai's headings."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def broken(readme: Path) -> list[str]:
    problems = []
    text = FENCE.sub("", readme.read_text(encoding="utf-8"))
    for n, line in enumerate(text.splitlines(), 1):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue  # a URL: not checked offline
            path, _, anchor = target.partition("#")
            file = readme.parent / path if path else readme
            if not file.exists():
                problems.append(f"{readme}:{n}: {target}: no such file")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                problems.append(f"{readme}:{n}: {target}: no heading '#{anchor}' in {file}")
    return problems


if __name__ == "__main__":
    found = [p for arg in sys.argv[1:] or ["README.md"] for p in broken(Path(arg))]
    print("\n".join(found) or "README links: all resolve")
    sys.exit(1 if found else 0)
