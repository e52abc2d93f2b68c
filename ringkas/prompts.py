"""Prompt templates live as files in `prompts/`, each with a version that feeds cache keys.

File format (`prompts/NAME.md`)::

    ---
    version: 3
    ---
    Template text with $placeholders (string.Template syntax, so JSON braces need no escaping).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template

PROMPTS_DIR = Path(os.environ.get("RINGKAS_PROMPTS_DIR", Path(__file__).resolve().parent.parent / "prompts"))
_FRONT_MATTER = re.compile(r"\A---\n(?P<head>.*?)\n---\n(?P<body>.*)\Z", re.S)


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    template: str

    @property
    def key(self) -> str:
        """`name@version`, the part of a cache key this template contributes."""
        return f"{self.name}@{self.version}"

    def render(self, **values: object) -> str:
        """Fill `$placeholders`; a missing value is a bug, so it raises KeyError."""
        return Template(self.template).substitute({k: str(v) for k, v in values.items()})


@cache
def load_prompt(name: str) -> Prompt:
    path = PROMPTS_DIR / f"{name}.md"
    raw = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    match = _FRONT_MATTER.match(raw)
    if not match:
        raise ValueError(f"prompt {path} has no '---' front matter with a version")
    head = dict(
        line.split(":", 1) for line in match.group("head").splitlines() if ":" in line
    )
    version = head.get("version", "").strip()
    if not version:
        raise ValueError(f"prompt {path} has no version")
    return Prompt(name=name, version=version, template=match.group("body").strip() + "\n")


def prompt_set_version(*names: str) -> str:
    """One version string for a set of templates used together (e.g. a summary's map and reduce)."""
    return "+".join(load_prompt(n).key for n in sorted(names))
