"""The message catalogs against the code: which strings the code shows, and which a catalog lacks.

    python -m ringkas.i18n.catalogs          update every .po file: new strings added (untranslated,
                                             marked fuzzy), strings the code no longer uses dropped

Strings are found with Babel's extractor: `_("…")`, `_.n("…", "…", n)` (both forms) and `N_("…")`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ringkas.i18n import DOMAIN, LOCALES, available

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("handlers", "ringkas")
KEYWORDS = {"_": None, "N_": None, "n": (1, 2)}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def code_messages(root: Path = ROOT) -> dict[str, str]:
    """Every message id the code shows -> where it first appears (file:line)."""
    from babel.messages.extract import extract_from_dir

    found: dict[str, str] = {}
    for folder in SOURCES:
        for filename, lineno, message, _comments, _context in extract_from_dir(
            root / folder, method_map=[("**.py", "python")], keywords=KEYWORDS
        ):
            for text in message if isinstance(message, tuple) else (message,):
                if text:
                    found.setdefault(text, f"{folder}/{filename}:{lineno}")
    return found


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def read(language: str) -> dict[str, str]:
    """A catalog as msgid -> msgstr (empty when untranslated), fuzzy entries counted as untranslated."""
    from babel.messages.pofile import read_po

    with (LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as handle:
        catalog = read_po(handle, locale=language)
    return {str(m.id): ("" if m.fuzzy else str(m.string or "")) for m in catalog if m.id}


def problems(language: str, root: Path = ROOT) -> list[str]:
    """What is wrong with one catalog: strings missing or untranslated, or with other placeholders."""
    entries = read(language)
    found: list[str] = []
    for message, where in sorted(code_messages(root).items(), key=lambda item: item[1]):
        if message not in entries:
            found.append(f"{where}: missing from {language}: {message!r}")
            continue
        translated = entries[message]
        if language != "en" and not translated:
            found.append(f"{where}: untranslated in {language}: {message!r}")
        elif translated and placeholders(translated) != placeholders(message):
            found.append(f"{where}: placeholders differ in {language}: {message!r}")
    return found


def update(root: Path = ROOT) -> None:
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po, write_po

    messages = code_messages(root)
    for language in available():
        path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
        with path.open("rb") as handle:
            old = read_po(handle, locale=language)
        new = Catalog(locale=language, domain=DOMAIN, project="Ringkas", charset="utf-8")
        for message, where in sorted(messages.items(), key=lambda item: item[1]):
            previous = old.get(message)
            string = str(previous.string) if previous is not None and previous.string else ""
            fuzzy = previous is None and language != "en"
            new.add(message, string, locations=[(where.rsplit(":", 1)[0], int(where.rsplit(":", 1)[1]))],
                    flags=("fuzzy",) if fuzzy else ())
        with path.open("wb") as handle:
            write_po(handle, new, width=110, omit_header=False, sort_output=False)


if __name__ == "__main__":
    update()
    for lang in available():
        for problem in problems(lang):
            print(problem, file=sys.stderr)
