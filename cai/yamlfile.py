"""YAML a user writes (constitutions, loop and training configs), read with limits.

PyYAML's safe loader runs no code, but left alone it expands aliases (ten nested lists of
aliases, a "billion laughs", grow past gigabytes), keeps the last of two equal keys without a
word, raises a ValueError on a number of over 4,300 digits and recurses once per level of
nesting until Python's stack runs out. This reader refuses each of those while it builds the
node tree, before anything is expanded, with the file and line; the node tree is returned too,
so that later checks can name the line of any key.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from cai.errors import InputError, yaml_line
from cai.records.read import read_text

MAX_BYTES = 1_000_000  # no constitution or config comes near; a larger file is a mistake
MAX_DEPTH = 32  # levels of nesting; cai's own files use four
MAX_INT = 2**63  # no setting needs a larger number; a huge one is a typo or an attack
# The tags a plain YAML value may carry; any other (`!!python/...`, `!!binary`, `!foo`) is not
# data a person means to write in a config.
PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in
              ("str", "int", "float", "bool", "null", "seq", "map")}
# YAML 1.2 numbers that PyYAML (YAML 1.1) reads as text: `1e-5`, `2E3`. Configs write
# learning rates this way, and a string there would reach TRL's optimizer.
EXPONENT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class _Refused(yaml.MarkedYAMLError):
    def __init__(self, node_or_event: Any, problem: str):
        super().__init__(problem=problem, problem_mark=node_or_event.start_mark)


class _Loader(yaml.SafeLoader):
    """A safe loader that refuses aliases, anchors, other tags, duplicate keys, deep nesting
    and huge numbers as it composes the node tree."""

    def __init__(self, text: str):
        super().__init__(text)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(event, f"alias '*{event.anchor}': aliases are not read here; "
                                  "write the value out in full")
        if getattr(event, "anchor", None):
            raise _Refused(event, f"anchor '&{event.anchor}': anchors and aliases are not "
                                  "read here; write each value out in full")
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and tag not in PLAIN_TAGS:
            short = tag.replace("tag:yaml.org,2002:", "!!")
            raise _Refused(event, f"tag '{short}' is not read here; write a plain value")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Refused(event, f"nested more than {MAX_DEPTH} levels deep; no setting "
                                      "needs that")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: dict[Any, int] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise _Refused(key, f"key '{key.value}' appears twice in one mapping (first "
                                        f"on line {seen[key.value]}); keep one")
                seen[key.value] = key.start_mark.line + 1
        return node

    def construct_yaml_int(self, node: Any) -> int:
        text = str(node.value)
        if len(text.replace("_", "")) > 40:  # before int() would take its time or refuse
            raise _Refused(node, f"the number {text[:12]}... ({len(text)} characters) is too "
                                 "large; write a number below 2**63")
        value = super().construct_yaml_int(node)
        if abs(value) >= MAX_INT:
            raise _Refused(node, f"the number {text[:24]} is too large; write a number below "
                                 "2**63")
        return value

    def construct_yaml_float(self, node: Any) -> float:
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise _Refused(node, f"{node.value} is not a finite number; write one that is")
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT, list("-+0123456789"))


def parse_yaml(text: str, source: str | Path = "<string>") -> tuple[Any, yaml.Node | None]:
    """The data and its node tree (None for an empty file); a problem is an InputError with
    the line, PyYAML's own message cut to its one useful sentence."""
    try:
        loader = _Loader(text)  # reads the text: a control character is refused here
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as e:
        raise InputError(source, text.count("\n", 0, e.position) + 1, f"the character "
                         f"#x{e.character:04x} is not allowed in YAML; remove it") from None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if not isinstance(e, _Refused):
            problem = f"invalid YAML: {problem}; check the indentation and quoting there"
        raise InputError(source, yaml_line(e, text) or 1, problem) from None
    return data, node


def read_yaml(path: str | Path) -> tuple[Any, yaml.Node | None]:
    """A YAML file, checked as `parse_yaml` does."""
    return parse_yaml(yaml_text(path), path)


def yaml_text(path: str | Path) -> str:
    """The text of a YAML file; one over 1 MB is refused unread."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_BYTES:
        raise InputError(path, None, f"{path.stat().st_size:,} bytes is too large for a "
                         f"config or constitution (at most {MAX_BYTES:,}); is it the right file?")
    return read_text(path)
