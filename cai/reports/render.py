"""Reports as files people read: Markdown and offline HTML, rendered from a report's JSON alone.

One renderer for every report: a Jinja2 template per view beside this module (`policy.md.j2`,
`policy.html.j2`, ...), and plots drawn with matplotlib from the JSON's numbers and inlined as
SVG, so that a page reads offline with no network and no JavaScript. A view computes nothing
the JSON does not hold. `write` is the one step that puts a report on disk: report.json first,
then the views drawn from it.

The JSON holds prompts, model replies and error text, so every value is hostile. A `.md.j2`
view escapes every value for Markdown (`md_text`), or shows it through the `code` and `block`
filters; every other view is HTML and escapes every value, whatever its name ends with.
Each HTML page also carries a Content-Security-Policy that allows no script at all
(`_head.html.j2`), so that a missed escape still cannot run.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from cai.errors import CaiWarning
from cai.records.rewrite import write_json

VIEWS = Path(__file__).parent
# What Markdown would read as markup in running text: HTML tags and entities (escaped as
# entities, which every Markdown viewer shows as the characters), and links, code spans and
# table cells (backslash-escaped). A newline would end a table row or a list item: a space.
_MD_HTML = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
_MD_SPECIAL = re.compile(r"[<>]|&(?=#?\w+;)|([\\`\[\]|])")


def md_text(value: Any) -> str:
    """A value as Markdown text that shows as the characters it holds."""
    if isinstance(value, Markup):  # made by the `code` and `block` filters
        return value
    text = " ".join(str(value).splitlines())
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(1) if m.group(1) else _MD_HTML[m.group(0)],
                           text)


def md_code(value: Any) -> Markup:
    """A value as a Markdown code span: shown verbatim, never read as markup. Its fence is
    longer than any run of backticks inside, and `|` is escaped so that a table keeps its
    columns (GitHub's tables read `\\|` inside a code span as `|`)."""
    text = " ".join(str(value).splitlines()).replace("|", "\\|")
    fence = "`" * (max((len(r) for r in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Markup(f"{fence}{pad}{text}{pad}{fence}")


def md_block(value: Any, info: str = "text") -> Markup:
    """A value as a fenced code block, newlines kept: nothing in it is read as markup."""
    text = str(value)
    fence = "`" * max(3, max((len(r) for r in re.findall("`+", text)), default=0) + 1)
    return Markup(f"{fence}{info}\n{text}\n{fence}")


@cache
def _env(markdown: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(VIEWS)), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
        # Not select_autoescape: it goes by the name's ending, and every view ends in `.j2`.
        autoescape=not markdown, finalize=md_text if markdown else None)
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    env.filters["num"] = lambda v: "-" if v is None else f"{v:g}"
    env.filters["code"] = md_code
    env.filters["block"] = md_block
    return env


def draw(write: Callable[[Path, dict[str, Any]], None], out: Path,
         report: dict[str, Any], views: tuple[str, ...] = ("report.md", "report.html")) -> None:
    """Draw a report's views once its JSON is written. The paid work is done by then and its
    figures are safe in report.json, so a view that cannot be drawn is a warning, never a
    failed run."""
    try:
        write(out, report)
    except Exception as e:  # any fault of a view: the numbers stand
        warnings.warn(f"{out}: {' and '.join(views)} {'was' if len(views) == 1 else 'were'} "
                      f"not drawn ({type(e).__name__}: {e}); every figure is in report.json",
                      CaiWarning, stacklevel=2)


def render(view: str, **context: Any) -> str:
    """A view rendered from `context`: Markdown for `*.md.j2`, escaped HTML for any other."""
    return _env(view.endswith(".md.j2")).get_template(view).render(**context)


def svg(figure: Any) -> str:
    """A matplotlib figure as an inline SVG element (text kept as text)."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Labels are data (a suite's categories, principle ids): `$...$` in one is text, never
    # mathtext, which would fail on what is not TeX.
    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False, "text.parse_math": False})
    return plt


def write(out: Path, name: str, report: dict[str, Any],
          plots: Callable[[dict[str, Any]], dict[str, Any]] | None = None, /, *,
          md: str = "report.md", **context: Any) -> None:
    """report.json into `out`, then the views of report `name` drawn from it: `{name}.md.j2`
    as `md` and, where the report has an HTML view, `{name}.html.j2` as report.html with the
    `plots` drawn from the report inline. `context` goes to both views (and may hold a
    `name` of its own: the first four arguments are positional only)."""
    write_json(out / "report.json", report)

    html = (VIEWS / f"{name}.html.j2").exists()

    def views(out: Path, report: dict[str, Any]) -> None:
        (out / md).write_text(render(f"{name}.md.j2", r=report, **context) + "\n",
                              encoding="utf-8")
        if html:
            (out / "report.html").write_text(
                render(f"{name}.html.j2", r=report, plots=plots(report) if plots else {},
                       **context), encoding="utf-8")

    draw(views, out, report, (md, "report.html") if html else (md,))
