"""A data report as people read it: the dataset card (README.md) and report.html, drawn from
report.json alone: the card's metadata and the plots."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from cai.reports.render import pyplot, svg

TAGS = ["synthetic", "constitutional-ai", "rlaif", "cai"]
CONFIG_TAGS = {"prefs": "preference", "sft": "sft", "prompts": "red-teaming"}


def front_matter(report: dict[str, Any], license: str, language: str,
                 pretty_name: str) -> str:
    """The card's YAML metadata, written by the hub's own card class."""
    from huggingface_hub import DatasetCardData

    names = [c["config_name"] for c in report["configs"]]
    data = DatasetCardData(
        license=license, language=[language], pretty_name=pretty_name,
        task_categories=["text-generation"],
        tags=TAGS + [CONFIG_TAGS[n] for n in names if n in CONFIG_TAGS],
        size_categories=[_size(sum(report["counts"].values()))],
        configs=report["configs"])
    return data.to_yaml()


def _size(n: int) -> str:
    """The hub's size category for n rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def card(report: dict[str, Any], *, license: str = "unknown", language: str = "en",
         name: str = "", sources: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the dataset card shows beside report.json: its metadata, name, licence, sources
    and the providers whose terms apply."""
    pretty_name = name or f"cai data: {report['folder']}"
    providers = sorted({m.split(":")[0] for m in report["provenance"]["models"]
                        if m.split(":")[0] in ("openai", "anthropic", "vllm")})
    # YAML, its values quoted by the hub's writer: it is not Markdown, and is not escaped as such
    return {"front_matter": Markup(front_matter(report, license, language, pretty_name)),
            "name": pretty_name, "license": license, "sources": sources,
            "providers": providers}


def plots(report: dict[str, Any]) -> dict[str, Any]:
    """report.html's plots as inline SVG, or None where there is nothing to draw."""
    return {"margins": margins(report["calibration"]) if report["calibration"] else None,
            "signals": signal_bars(report["reward_hacking"])
            if report["reward_hacking"] else None,
            "principles": principle_bars(report) if report["diversity"]["principles_used"]
            else None}


def margins(calibration: dict[str, Any]) -> str:
    plt = pyplot()
    h = calibration["margin_histogram"]
    fig, ax = plt.subplots(figsize=(6.5, 2.4))
    ax.bar([b + 0.05 for b in h["bins"][:-1]], h["counts"], 0.09, color="#3b6ea8")
    ax.set_xlim(0, 1)
    ax.set_xlabel("margin |2p - 1| of the judge's soft label")
    ax.set_ylabel("pairs")
    return svg(fig)


def signal_bars(hacking: dict[str, Any]) -> str:
    """For each signal, the share of pairs where chosen has more, the same, or less."""
    plt = pyplot()
    names = list(hacking["signals"])
    rows = [hacking["signals"][n] for n in names]
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(names) + 1.1))
    ys = range(len(names))
    left = [0.0] * len(names)
    for key, label, colour in (("chosen_more", "chosen more", "#c0504d"),
                               ("same", "same", "#cccccc"),
                               ("chosen_less", "chosen less", "#3b6ea8")):
        values = [r[key] for r in rows]
        ax.barh(list(ys), values, left=left, label=label, color=colour)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.axvline(0.7, color="#555555", linestyle="--", linewidth=1)
    ax.set_yticks(list(ys), [n.replace("_", " ") for n in names])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of pairs")
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, frameon=False)
    return svg(fig)


def principle_bars(report: dict[str, Any]) -> str:
    """Records per principle, the constitution's unused principles shown at zero."""
    plt = pyplot()
    used = dict(report["diversity"]["principles_used"])
    for missing in report["diversity"].get("principles_missing", []):
        used.setdefault(missing, 0)
    fig, ax = plt.subplots(figsize=(6.5, 0.26 * len(used) + 1.0))
    ax.barh(range(len(used)), list(used.values()), color="#3b6ea8")
    ax.set_yticks(range(len(used)), list(used))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("records made or judged under the principle")
    ax.invert_yaxis()
    return svg(fig)
