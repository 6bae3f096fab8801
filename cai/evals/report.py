"""Reports as files people read: Markdown and offline HTML, rendered from a report's JSON alone.

One renderer for every report: a Jinja2 template per view in `views/`, and plots drawn with
matplotlib from the JSON's numbers and inlined as SVG, so that a page reads offline with no
network and no JavaScript. A view computes nothing the JSON does not hold.

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

VIEWS = Path(__file__).with_name("views")
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
         report: dict[str, Any]) -> None:
    """Draw a report's views once its JSON is written. The paid work is done by then and its
    figures are safe in report.json, so a view that cannot be drawn is a warning, never a
    failed run."""
    try:
        write(out, report)
    except Exception as e:  # any fault of a view: the numbers stand
        warnings.warn(f"{out}: report.md and report.html were not drawn ({type(e).__name__}: "
                      f"{e}); every figure is in report.json", CaiWarning, stacklevel=2)


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


def refusal_by_category(report: dict[str, Any]) -> str:
    """Share of answers refused (in full or part) per category, policy beside reference."""
    plt = pyplot()
    cats = list(report["by_category"])
    def share(block: dict[str, Any] | None, c: str) -> float:
        row = (block or {}).get(c)
        if not row or not row["n"]:
            return 0.0
        return (row["refusals"]["partial"] + row["refusals"]["full"]) / row["n"]
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(cats) + 1.2))
    ys = range(len(cats))
    ax.barh([y + 0.2 for y in ys], [share(report["by_category"], c) for c in cats], 0.4,
            label="policy", color="#3b6ea8")
    if report.get("reference"):
        ref = report["reference"]["by_category"]
        ax.barh([y - 0.2 for y in ys], [share(ref, c) for c in cats], 0.4,
                label="reference", color="#c98b2b")
    ax.set_yticks(list(ys), cats)
    ax.set_xlim(0, 1)
    ax.set_xlabel("answers refused, in full or part")
    ax.invert_yaxis()
    ax.legend(loc="lower right", frameon=False)
    return svg(fig)


def length_distributions(report: dict[str, Any]) -> str:
    plt = pyplot()
    h = report["length_histogram"]
    labels = [f"{lo}+" if i == len(h["bins"]) - 1 else f"{lo}-{h['bins'][i + 1]}"
              for i, lo in enumerate(h["bins"])]
    fig, ax = plt.subplots(figsize=(6.5, 2.6))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], h["policy"], 0.4, label="policy", color="#3b6ea8")
    if h.get("reference"):
        ax.bar([x + 0.2 for x in xs], h["reference"], 0.4, label="reference", color="#c98b2b")
    ax.set_xticks(list(xs), labels, rotation=45)
    ax.set_xlabel("answer length (words)")
    ax.set_ylabel("answers")
    ax.legend(frameon=False)
    return svg(fig)


def win_rate(report: dict[str, Any]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 1.5))
    rate, (lo, hi) = report["win_rate"], report.get("win_rate_ci95") or (None, None)
    if lo is None or hi is None:
        ax.plot([rate], [1], "o", color="#3b6ea8")
    else:
        ax.errorbar([rate], [1], xerr=[[rate - lo], [hi - rate]], fmt="o", color="#3b6ea8",
                    capsize=4)
    controlled = report.get("win_rate_length_controlled")
    if controlled is None:
        ax.text(0.01, 0, "length-controlled: not measured", va="center", color="#666666")
    else:
        ax.plot([controlled], [0], "D", color="#555555")
    ax.axvline(0.5, color="#999999", linestyle="--", linewidth=1)
    ax.set_yticks([0, 1], ["length-controlled", "win rate (95% CI)"])
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlabel("P(policy better than reference)")
    return svg(fig)


def write_views(out: Path, report: dict[str, Any]) -> None:
    """report.md and report.html beside report.json."""
    plots = {"refusal": refusal_by_category(report),
             "lengths": length_distributions(report),
             "win": win_rate(report) if report.get("win_rate") is not None else None}
    (out / "report.md").write_text(render("policy.md.j2", r=report) + "\n", encoding="utf-8")
    (out / "report.html").write_text(render("policy.html.j2", r=report, plots=plots),
                                     encoding="utf-8")
