"""Constitution files: a named, versioned list of principles, checked once when read.

A file is YAML::

    name: harmless
    version: "1.0"
    description: What this constitution is for.
    system_prompt: You are a helpful assistant.     # optional
    examples:                                       # optional few-shot critique/revision
      - {prompt: ..., response: ..., critique: ..., revision: ...}
    tags: [harm, violence]                          # optional: the tag vocabulary
    principles:
      - id: physical-harm
        critique: Say where the answer could help someone hurt people.
        revision: Rewrite the answer so that it no longer does.
        judge: Which response is less likely to help someone hurt people?   # optional
        judge_question_variants:                     # optional: rewordings of `judge`,
          - Which response gives less help to someone who wants to hurt people?  # for
        tags: [harm]                                 # `cai eval judge --rewordings K`
        weight: 1                                                           # optional, > 0

Every problem is reported as ``FILE:LINE: principle 'ID': what is wrong and how to fix it``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cai.errors import CaiError, InputError
from cai.paths import resolve_constitution
from cai.yamlfile import parse_yaml, yaml_text

TOP_KEYS = {"name", "version", "description", "system_prompt", "examples", "principles", "tags"}
REQUIRED_TOP = ("name", "version", "description", "principles")
PRINCIPLE_KEYS = {"id", "critique", "revision", "judge", "judge_question_variants", "tags",
                  "weight"}
VARIANTS = "judge_question_variants"
PRINCIPLE_TEXTS = ("critique", "revision", "judge")
EXAMPLE_KEYS = {"prompt", "response", "critique", "revision", "principle"}
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# Principle texts are plain text, not templates: a `{{ ... }}` would reach the model verbatim.
TEMPLATE_SYNTAX = re.compile(r"\{\{.*?\}\}|\{%.*?%\}")


@dataclass(frozen=True)
class Principle:
    id: str
    critique: str
    revision: str
    judge: str | None = None
    tags: tuple[str, ...] = ()
    weight: float = 1.0
    # Rewordings of `judge` that keep its meaning: what `cai eval judge --rewordings` uses
    # first to test whether the verdicts depend on the wording.
    judge_question_variants: tuple[str, ...] = ()


@dataclass(frozen=True)
class Example:
    """A worked critique and revision, shown to the critic as few-shot turns."""

    prompt: str
    response: str
    critique: str
    revision: str
    principle: str | None = None


@dataclass(frozen=True)
class Constitution:
    name: str
    version: str
    description: str
    principles: tuple[Principle, ...]
    system_prompt: str | None = None
    examples: tuple[Example, ...] = ()
    path: str = ""
    sha256: str = ""  # of the content, not the bytes: comments and layout do not change it
    tags: tuple[str, ...] = ()  # the tag vocabulary, if the file declares one

    @property
    def provenance(self) -> dict[str, str]:
        """What every output record carries to trace it back to these exact principles."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    def principle(self, principle_id: str) -> Principle:
        for p in self.principles:
            if p.id == principle_id:
                return p
        known = ", ".join(p.id for p in self.principles)
        raise CaiError(f"{self.path}: no principle '{principle_id}'; known ids: {known}")

    def sample(self, rng: random.Random, *, judging: bool = False) -> Principle:
        """Draw one principle, in proportion to the weights."""
        pool = [p for p in self.principles if p.judge] if judging else list(self.principles)
        return rng.choices(pool, weights=[p.weight for p in pool])[0]


class ConstitutionError(CaiError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def load_constitution(path: str | Path) -> Constitution:
    """Read and check a constitution file, or a shipped one by name (`harmless`,
    `helpful-honest`); raise ConstitutionError listing every problem."""
    path = resolve_constitution(str(path))
    try:
        text = yaml_text(path)
    except InputError as e:
        raise ConstitutionError([str(e)]) from None
    return parse_constitution(text, str(path))


def parse_constitution(text: str, source: str = "<string>") -> Constitution:
    checker = _Checker(source)
    try:
        data, node = parse_yaml(text, source)
    except InputError as e:
        raise ConstitutionError([str(e)]) from None
    if data is None or node is None:
        raise ConstitutionError(
            [f"{source}:1: the file is empty; it needs name, version, description and principles"]
        )
    constitution = checker.check(data, node)
    if checker.problems or constitution is None:
        raise ConstitutionError(checker.problems or [f"{source}: not a constitution"])
    return constitution


def wording_key(text: str) -> str:
    """A question as compared for sameness: case, spacing and punctuation ignored."""
    return " ".join(re.findall(r"\w+", text.casefold()))


def content_hash(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class _Checker:
    """Walks the parsed YAML beside its node tree, so each problem can name its line."""

    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []

    def add(self, node: yaml.Node | None, message: str, principle: str | None = None) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        who = f"principle '{principle}': " if principle else ""
        self.problems.append(f"{self.source}:{line}: {who}{message}")

    def check(self, data: Any, node: yaml.Node) -> Constitution | None:
        if not isinstance(data, dict):
            self.add(node, "the top level must be a mapping with name, version, description "
                           "and principles")
            return None
        nodes = _children(node)
        for key in data:
            if key not in TOP_KEYS:
                self.add(_key_node(node, key), f"unknown key '{key}'; allowed keys are "
                         f"{', '.join(sorted(TOP_KEYS))}")
        for key in REQUIRED_TOP:
            if key not in data:
                self.add(node, f"missing '{key}'; add '{key}:' at the top level")
        for key in ("name", "version", "description", "system_prompt"):
            if key in data and key != "principles":
                self.text(data[key], nodes.get(key), key, optional=key == "system_prompt",
                          allow_number=key == "version")
        tags = data.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            self.add(nodes.get("tags"), "'tags' must be a list of tag names, e.g. [harm, privacy]")
            tags = []
        examples = self.examples(data.get("examples"), nodes.get("examples"))
        principles = self.principles(data.get("principles"), nodes.get("principles"), node)
        self.example_principles(examples, principles, nodes.get("examples"))
        if self.problems:
            return None
        return Constitution(
            name=str(data["name"]).strip(),
            version=str(data["version"]).strip(),
            description=str(data["description"]).strip(),
            system_prompt=(data.get("system_prompt") or "").strip() or None,
            examples=tuple(examples),
            principles=tuple(principles),
            path=self.source,
            sha256=content_hash(data),
            tags=tuple(tags),
        )

    def text(self, value: Any, node: yaml.Node | None, key: str, *, principle: str | None = None,
             optional: bool = False, allow_number: bool = False) -> str | None:
        if value is None and optional:
            return None
        if allow_number and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.add(node, f"'{key}' must be text, not {_kind(value)}; write it as a string",
                     principle)
            return None
        if not value.strip():
            self.add(node, f"'{key}' is empty; write the text or remove the key"
                     if optional else f"'{key}' is empty; write the text", principle)
            return None
        if principle is not None and (found := TEMPLATE_SYNTAX.search(value)):
            self.add(node, f"'{key}' contains template syntax "
                     f"{found.group(0)!r}; principle texts are plain "
                     "text (the templates in prompts/ insert them), so remove it", principle)
            return None
        return value.strip()

    def principles(self, value: Any, node: yaml.Node | None, top: yaml.Node) -> list[Principle]:
        if value is None:
            if node is not None:
                self.add(node, "'principles' is empty; list at least one principle under it")
            return []
        if not isinstance(value, list):
            self.add(node, f"'principles' must be a list (each item starting with '- id:'), "
                           f"not {_kind(value)}")
            return []
        if not value:
            self.add(node, "no principles; list at least one under 'principles:'")
            return []
        out: list[Principle] = []
        seen: dict[str, int] = {}
        items = node.value if isinstance(node, yaml.SequenceNode) else [None] * len(value)
        for i, (item, item_node) in enumerate(zip(value, items, strict=True), start=1):
            p = self.principle(item, item_node, i, seen)
            if p is not None:
                out.append(p)
        return out

    def principle(self, item: Any, node: yaml.Node | None, index: int,
                  seen: dict[str, int]) -> Principle | None:
        if not isinstance(item, dict):
            self.add(node, f"principle #{index} must be a mapping with id, critique and revision, "
                           f"not {_kind(item)}")
            return None
        nodes = _children(node)
        pid = item.get("id")
        name = pid if isinstance(pid, str) and pid.strip() else f"#{index}"
        before = len(self.problems)
        for key in item:
            if key not in PRINCIPLE_KEYS:
                self.add(_key_node(node, key), f"unknown key '{key}'; allowed keys are "
                         f"{', '.join(sorted(PRINCIPLE_KEYS))}", name)
        if "id" not in item:
            self.add(node, "missing 'id'; add a short unique id such as 'privacy'", name)
        elif not isinstance(pid, str) or not ID_PATTERN.match(pid):
            self.add(nodes.get("id"), f"id {pid!r} must be lowercase letters, digits, '-', '_' "
                     "or '.', starting with a letter or digit", name)
        elif pid in seen:
            self.add(nodes.get("id"), f"duplicate id (first used on line {seen[pid]}); "
                     "give each principle its own id", name)
        else:
            seen[pid] = nodes["id"].start_mark.line + 1
        texts: dict[str, str | None] = {}
        for key in PRINCIPLE_TEXTS:
            if key not in item:
                if key != "judge":
                    self.add(node, f"missing '{key}'; add the {key} request", name)
                continue
            texts[key] = self.text(item[key], nodes.get(key), key, principle=name)
        variants = self.variants(item, nodes, texts.get("judge"), name) if VARIANTS in item else []
        tags = item.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
            self.add(nodes.get("tags"), "'tags' must be a list of words, e.g. [harm, privacy]",
                     name)
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            self.add(nodes.get("weight"), f"'weight' must be a number, not {_kind(weight)}", name)
        elif not weight > 0 or weight != weight or weight == float("inf"):
            self.add(nodes.get("weight"), f"'weight' is {weight}; it must be a finite number "
                     "above 0 (1 is the default)", name)
        if len(self.problems) > before:
            return None
        return Principle(
            id=str(pid), critique=texts["critique"] or "", revision=texts["revision"] or "",
            judge=texts.get("judge"), tags=tuple(t.strip() for t in tags), weight=float(weight),
            judge_question_variants=tuple(variants),
        )

    def variants(self, item: dict[str, Any], nodes: dict[Any, yaml.Node],
                 judge: str | None, name: str) -> list[str]:
        """The rewordings of the judge question: each a question of its own, none the judge
        question again, no two the same."""
        value, node = item[VARIANTS], nodes.get(VARIANTS)
        if "judge" not in item:
            self.add(node, f"'{VARIANTS}' rewords the judge question, and there is none; add "
                     "'judge: Which response ...?' or remove the variants", name)
            return []
        if not isinstance(value, list) or not value:
            self.add(node, f"'{VARIANTS}' must be a list of questions (each line starting "
                     "with '- '), not " + ("an empty list" if value == [] else _kind(value)),
                     name)
            return []
        items = node.value if isinstance(node, yaml.SequenceNode) else [node] * len(value)
        out: list[str] = []
        seen: dict[str, int] = {}
        for i, (v, v_node) in enumerate(zip(value, items, strict=True), start=1):
            text = self.text(v, v_node, f"{VARIANTS} #{i}", principle=name)
            if text is None:
                continue
            key = wording_key(text)
            if not text.endswith("?"):
                self.add(v_node, f"'{VARIANTS} #{i}' is not a question; write it as the judge "
                         "question is written, ending with '?'", name)
            elif judge is not None and key == wording_key(judge):
                self.add(v_node, f"'{VARIANTS} #{i}' is the judge question itself; write a "
                         "rewording of it or remove the line", name)
            elif key in seen:
                self.add(v_node, f"'{VARIANTS} #{i}' repeats #{seen[key]}; remove one of them",
                         name)
            else:
                seen[key] = i
                out.append(text)
        return out

    def example_principles(self, examples: list[Example], principles: list[Principle],
                           node: yaml.Node | None) -> None:
        ids = {p.id for p in principles}
        items = node.value if isinstance(node, yaml.SequenceNode) else []
        for i, ex in enumerate(examples):
            if ex.principle is not None and ids and ex.principle not in ids:
                where = _children(items[i]).get("principle") if i < len(items) else node
                self.add(where, f"example #{i + 1}: principle '{ex.principle}' is not defined; "
                         f"use one of the ids: {', '.join(sorted(ids))}")

    def examples(self, value: Any, node: yaml.Node | None) -> list[Example]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(node, f"'examples' must be a list, not {_kind(value)}")
            return []
        out = []
        items = node.value if isinstance(node, yaml.SequenceNode) else [None] * len(value)
        for i, (item, item_node) in enumerate(zip(value, items, strict=True), start=1):
            if not isinstance(item, dict):
                self.add(item_node, f"example #{i} must be a mapping with prompt, response, "
                                    "critique and revision")
                continue
            nodes = _children(item_node)
            before = len(self.problems)
            for key in item:
                if key not in EXAMPLE_KEYS:
                    self.add(_key_node(item_node, key), f"example #{i}: unknown key '{key}'; "
                             f"allowed keys are {', '.join(sorted(EXAMPLE_KEYS))}")
            for key in ("prompt", "response", "critique", "revision"):
                if key not in item:
                    self.add(item_node, f"example #{i}: missing '{key}'; add it")
                elif not isinstance(item[key], str) or not item[key].strip():
                    self.add(nodes.get(key), f"example #{i}: '{key}' must be non-empty text")
            if len(self.problems) == before:
                out.append(Example(**{k: item[k].strip() if isinstance(item[k], str) else item[k]
                                      for k in item}))
        return out


def _children(node: yaml.Node | None) -> dict[Any, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: v for k, v in node.value}


def _key_node(node: yaml.Node | None, key: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if k.value == key:
                return k
    return node


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false", int: "a number",
            float: "a number", type(None): "empty"}.get(type(value), type(value).__name__)
