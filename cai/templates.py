"""Prompt templates: every text cai sends a model comes from a file in prompts/.

Templates are Jinja2 with undefined variables as errors. Each file opens with a comment that
says what it is for and lists its variables. A user's own folder (`--templates DIR`) is searched
first, so overriding one template means copying just that file.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from cai.errors import CaiError
from cai.paths import shipped

SUFFIX = ".j2"


class Templates:
    def __init__(self, directory: str | Path | None = None):
        if directory is not None and not Path(directory).is_dir():
            raise CaiError(f"{directory}: templates folder not found; pass an existing folder "
                           "or leave --templates out to use the shipped ones")
        self.dirs = [Path(directory)] if directory else []
        self.dirs.append(shipped("prompts"))
        self._hashes: dict[str, str] = {}
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in self.dirs]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )

    def names(self) -> list[str]:
        return sorted({p.stem for d in self.dirs for p in d.glob(f"*{SUFFIX}")
                       if not p.stem.startswith("_")})  # _name: a partial, included by others

    def source(self, name: str) -> tuple[str, str]:
        """The template's text and the file it came from."""
        try:
            text, filename, _ = self.env.loader.get_source(self.env, name + SUFFIX)  # type: ignore[union-attr]
        except jinja2.TemplateNotFound:
            raise CaiError(f"no template '{name}'; known: {', '.join(self.names())}") from None
        except UnicodeDecodeError as e:
            path = next(d / (name + SUFFIX) for d in self.dirs if (d / (name + SUFFIX)).is_file())
            raise CaiError(f"{path}: not UTF-8 text (byte offset {e.start}); save the template "
                           "as UTF-8") from None
        return text, str(filename)

    def variables(self, name: str) -> list[str]:
        """The variables a template takes, those of the partials it includes too."""
        text, filename = self.source(name)
        try:
            ast = self.env.parse(text)
        except jinja2.TemplateSyntaxError as e:
            raise CaiError(f"{filename}:{e.lineno}: template syntax error: {e.message}") from None
        found = set(jinja2.meta.find_undeclared_variables(ast))
        for partial in jinja2.meta.find_referenced_templates(ast):
            if partial:
                found |= set(self.variables(partial.removesuffix(SUFFIX)))
        return sorted(found)

    def sha256(self, name: str) -> str:
        # Read once per Templates: records of one run name the templates it started with.
        if name not in self._hashes:
            self._hashes[name] = _sha(self.source(name)[0])
        return self._hashes[name]

    def render(self, name: str, **variables: Any) -> str:
        """Render a template; a missing variable is an error naming the template and variable."""
        try:
            template = self.env.get_template(name + SUFFIX)
            return template.render(**variables).strip()
        except jinja2.TemplateNotFound:
            raise CaiError(f"no template '{name}'; known: {', '.join(self.names())}") from None
        except jinja2.UndefinedError as e:
            _, filename = self.source(name)
            raise CaiError(f"{filename}: {e.message}; this template takes "
                           f"{', '.join(self.variables(name))}") from None
        except jinja2.TemplateSyntaxError as e:
            raise CaiError(f"{e.filename}:{e.lineno}: template syntax error: {e.message}") from None

    def hashes(self, *names: str) -> dict[str, str]:
        return {n: self.sha256(n) for n in names}


@cache
def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
