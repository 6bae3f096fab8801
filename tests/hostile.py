"""Hostile text for every page cai draws, and the one check that a page ran none of it.

Prompts and model replies are hostile by design (cai makes red-team prompts), so each report
and the review page is rendered from records made of these strings and opened in Chromium:
nothing may run, nothing may be injected into the page, and the text must show as text.
Markdown reports are opened as a viewer that renders HTML in Markdown would show them."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import offline_page

# Each tries one way in. Whatever runs sets `window.pwned` (or the title).
STRINGS = [
    "<script>window.pwned = 'script'; document.title = 'PWNED'</script>",
    "<img src=x onerror=\"window.pwned = 'onerror'\">",
    "<svg onload=\"window.pwned = 'svg'\"><circle r=9></circle></svg>",
    "<a href=\"javascript:window.pwned = 'link'\">click me</a>",
    "\"'><b onmouseover=\"window.pwned = 'quote'\">out of the attribute</b>",
    "</td></tr></table></pre></div></style></title><script>window.pwned = 'closed'</script>",
    "{{ 7 * 7 }} {% if true %}template{% endif %} {# a comment #}",
    "[a link](javascript:window.pwned='md') ![an image](javascript:x) <javascript:alert(1)>",
    "| a | table | row |\n```\n<script>window.pwned = 'fence'</script>\n```",
    "$\\frac{1}{0}$ costs $5 and `code` ends here",
]


def hostile(i: int) -> str:
    """The i-th hostile string, cycling; an index in front keeps records apart."""
    return f"h{i} {STRINGS[i % len(STRINGS)]}"


def flat(text: str) -> str:
    return " ".join(text.split())


# Everything in the page that could run or load something.
ACTIVE = """() => {
  const all = [...document.querySelectorAll('*')];
  return {
    pwned: window.pwned === undefined ? null : String(window.pwned),
    title: document.title,
    scripts: [...document.scripts].map(s => s.src || s.textContent.slice(0, 60)),
    handlers: all.flatMap(e => [...e.attributes].filter(a => a.name.startsWith('on'))
                              .map(a => e.tagName + ' ' + a.name)),
    links: all.flatMap(e => ['href', 'src', 'xlink:href', 'action', 'formaction']
                              .map(n => e.getAttribute(n) || '')
                              .filter(v => v.trim().toLowerCase().startsWith('javascript:'))),
    embedded: document.querySelectorAll('img, iframe, object, embed, frame, form').length,
  };
}"""


def assert_inert(page, shown=(), scripts=()) -> str:
    """Nothing of the hostile text ran or became markup, and each of `shown` reads as text in
    the page. `scripts`: the page's own scripts (the review page has one). Returns the page's
    text."""
    found = page.evaluate(ACTIVE)
    assert found["pwned"] is None, f"hostile text ran: {found['pwned']}"
    assert "PWNED" not in found["title"]
    assert found["scripts"] == list(scripts), found["scripts"]
    assert found["handlers"] == [], found["handlers"]
    assert found["links"] == [], found["links"]
    assert found["embedded"] == 0
    text = flat(page.evaluate("document.body.innerText"))
    for s in shown:
        assert flat(s) in text, f"not shown as text: {s!r}"
    return text


def open_markdown(browser, markdown: str, tmp_path: Path, name: str = "view.html"):
    """A Markdown view rendered as a viewer that allows HTML in Markdown renders it (no
    Content-Security-Policy of ours), opened offline."""
    from markdown_it import MarkdownIt

    if markdown.startswith("---\n"):  # a dataset card's YAML, which the hub shows as data
        markdown = markdown.split("\n---\n", 1)[1]
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    path = tmp_path / name
    path.write_text(f"<!doctype html><meta charset='utf-8'><body>{html}</body>",
                    encoding="utf-8")
    return open_page(browser, path)


def open_page(browser, path: Path):
    """A report file, offline."""
    page = offline_page(browser)
    page.goto(path.as_uri())
    return page
