"""The bot's own words in the team's language: gettext catalogs (`locales/<lang>/LC_MESSAGES/ringkas.po`)
read with Babel, plus dates and times in that language's conventions.

Message ids are the English text (the gettext convention), so English needs no translation and a
language without a catalog reads English. The .po files are read directly (no compiled .mo files:
`pip install -e .` has no build step to produce them) and cached per language.

    _ = translator("id")
    _("Reading {host}…", host="teknokini.example")
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from ringkas.language import normalize_language

LOCALES = Path(__file__).parent / "locales"
DOMAIN = "ringkas"
DEFAULT = "en"


def N_(message: str) -> str:  # the gettext name for "translate later"
    """Marks a string for the catalogs where it is defined; it is translated where it is shown."""
    return message


def available() -> tuple[str, ...]:
    """Languages with a catalog."""
    return tuple(sorted(p.name for p in LOCALES.iterdir() if (p / "LC_MESSAGES" / f"{DOMAIN}.po").is_file()))


@lru_cache(maxsize=16)
def _catalog(language: str) -> dict[str, str]:
    from babel.messages.pofile import read_po

    path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.is_file():
        return {}
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    return {str(m.id): str(m.string) for m in catalog if m.id and isinstance(m.id, str) and m.string}


def ui_language(language: str | None) -> str:
    """The catalog for `language` ('id-ID' -> 'id'); English when there is none."""
    code = normalize_language(language) or DEFAULT
    return code if code in available() else DEFAULT


class Translator:
    """`_(msgid, **values)`: the translation of `msgid` with `{name}` placeholders filled in."""

    def __init__(self, language: str | None) -> None:
        self.language = ui_language(language)
        self._messages = _catalog(self.language)

    def __call__(self, message: str, /, **values: object) -> str:
        text = self._messages.get(message, message)
        return text.format(**values) if values else text

    def n(self, singular: str, plural: str, count: int, /, **values: object) -> str:
        """Singular or plural by `count` (both forms are message ids; `{n}` is the count)."""
        return self(singular if count == 1 else plural, n=count, **values)

    def language_name(self, code: str) -> str:
        """`id` -> `Indonesian` in English, `Indonesia` in Indonesian; an unknown code as is."""
        from babel import Locale, UnknownLocaleError

        try:
            name = Locale.parse(code.replace("-", "_")).get_display_name(self.language)
        except (UnknownLocaleError, ValueError, TypeError):
            return code
        return name or code

    # dates and times ----------------------------------------------------------------------------

    def date(self, day: date | str | None) -> str:
        """`24 January 2023` / `24 Januari 2023`; an ISO string is parsed, anything else shown as is."""
        from babel.dates import format_date

        if day is None:
            return ""
        if isinstance(day, str):
            try:
                day = date.fromisoformat(day[:10])
            except ValueError:
                return day
        return format_date(day, format="d MMMM y", locale=self.language)

    def long_date(self, day: date) -> str:
        """`Wednesday, 2 December 2026` / `Rabu, 2 Desember 2026`."""
        from babel.dates import format_date

        return format_date(day, format="EEEE, d MMMM y", locale=self.language)

    def moment(self, when: datetime, timezone: str) -> str:
        """`Rabu, 2 Desember 07.30 WIB` / `Wednesday, 2 December 7:30 AM (Asia/Jakarta)`: a moment on the
        channel's clock, named by the zone's abbreviation where the language has one."""
        from babel.dates import format_datetime, format_time

        zone = ZoneInfo(timezone)
        day = format_datetime(when, "EEEE, d MMMM", tzinfo=zone, locale=self.language)
        clock = format_time(when, "short", tzinfo=zone, locale=self.language)
        abbreviation = format_datetime(when, "z", tzinfo=zone, locale=self.language)
        if abbreviation[:1] in "+-" or abbreviation.startswith(("GMT", "UTC")):
            return f"{day} {clock} ({timezone})"
        return f"{day} {clock} {abbreviation}"


def translator(language: str | None) -> Translator:
    return Translator(language)


Gettext = Callable[..., str]

__all__ = ["DEFAULT", "N_", "Gettext", "Translator", "available", "translator", "ui_language"]
