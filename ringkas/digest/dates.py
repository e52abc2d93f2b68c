"""Whether a feed item's date can be believed.

feedparser guesses: `2020/1/10 14:33:00` comes back as 1 December 2020, `2024` as 1 January 2024. A date
that lands in today's window by such a guess would put old news in today's digest, so a parsed date is
checked against the raw text: a strict reading of common unambiguous forms (RFC 822, ISO 8601/RFC 3339,
year-first numeric dates) wins over a guess; a date whose raw text does not show its year, month and day
is not trusted at all (the item is then never "today's" news).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

AGREE = timedelta(hours=26)  # time zones and day boundaries: a strict reading this close agrees
_YEAR_FIRST = re.compile(
    r"^\s*(\d{4})[/.-](\d{1,2})[/.-](\d{1,2})"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?\s*$",
    re.IGNORECASE,
)
_MONTHS = (
    ("jan",), ("feb", "peb"), ("mar",), ("apr",), ("may", "mei"), ("jun",), ("jul",), ("aug", "agu", "agt"),
    ("sep",), ("oct", "okt"), ("nov", "nop"), ("dec", "des"),
)


def _aware(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _offset(text: str | None) -> timedelta:
    if not text or text.upper() in {"Z", "UTC", "GMT"}:
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))


def strict_date(raw: str) -> datetime | None:
    """`raw` read only by unambiguous rules (RFC 822, ISO 8601, year-first numeric), else None."""
    text = raw.strip()
    if not text or len(text) > 100:
        return None
    try:
        return _aware(parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError, OverflowError):
        pass
    try:
        if re.match(r"^\d{4}-\d{2}-\d{2}", text):
            return _aware(datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00")))
    except ValueError:
        pass
    match = _YEAR_FIRST.match(text)
    if match:
        year, month, day, hour, minute, second, zone = match.groups()
        try:
            local = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                             int(second or 0), tzinfo=UTC)
        except ValueError:
            return None
        return local - _offset(zone)
    return None


def _shows(raw: str, moment: datetime) -> bool:
    """The raw text contains the moment's year, day number and month (as a number or a name)."""
    lowered = raw.lower()
    numbers = {int(n) for n in re.findall(r"\d+", lowered) if len(n) <= 4}
    if moment.year not in numbers or moment.day not in numbers:
        return False
    return moment.month in numbers or any(name in lowered for name in _MONTHS[moment.month - 1])


def checked_date(raw: str | None, parsed: datetime | None) -> tuple[datetime | None, bool]:
    """(the item's date, whether it can be trusted). No raw text and no parsed date: undated (trusted)."""
    raw = (raw or "").strip()
    if not raw:
        return parsed, True
    strict = strict_date(raw)
    if strict is not None:
        if parsed is not None and abs(strict - parsed) <= AGREE:
            return parsed, True
        return strict, True
    if parsed is not None and _shows(raw, parsed):
        return parsed, True
    return None, False


def feed_dates_doubtful(trusted: Sequence[bool]) -> bool:
    """When most of a feed's dated items fail the check, its other dates are guesses too."""
    doubtful = sum(1 for ok in trusted if not ok)
    return doubtful >= 2 and doubtful * 2 >= len(trusted)
