"""Fixed words of a digest (header, footer, markers) in the team's language, and its date line.

English and Indonesian are built in; other languages use English labels (the stories themselves are
written by the model in the team's language).
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "AI news digest",
        "shared": "shared by the team",
        "quiet": "No AI-industry news in the sources I read since {since}.",
        "read": "Read {items} new items from {ok} of {total} sources",
        "read_no_feeds": "No news feeds configured",
        "team_links": "{n} link(s) shared by the team",
        "unavailable": "{n} source(s) unavailable",
        "more": "More stories in the thread.",
        "continued": "More from today's digest",
        "sources": "Sources",
        "from_feed": "feed text, not summarized",
        "more_failed": "{n} more",
    },
    "id": {
        "title": "Ringkasan berita AI",
        "shared": "dibagikan tim",
        "quiet": "Tidak ada berita industri AI di sumber yang saya baca sejak {since}.",
        "read": "Membaca {items} item baru dari {ok}/{total} sumber",
        "read_no_feeds": "Tidak ada feed berita yang diatur",
        "team_links": "{n} tautan dibagikan tim",
        "unavailable": "{n} sumber tidak dapat diakses",
        "more": "Berita lainnya ada di utas.",
        "continued": "Lanjutan ringkasan hari ini",
        "sources": "Sumber",
        "from_feed": "teks dari feed, belum diringkas",
        "more_failed": "{n} lainnya",
    },
}
_ID_DAYS = ["Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu"]
_ID_MONTHS = ["Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus", "September",
              "Oktober", "November", "Desember"]
_EN_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_EN_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December"]


def labels(language: str) -> dict[str, str]:
    return _LABELS.get(language.split("-")[0].lower(), _LABELS["en"])


def long_date(day: date, language: str) -> str:
    """`Tuesday, 10 March 2026` / `Selasa, 10 Maret 2026`."""
    if language.split("-")[0].lower() == "id":
        return f"{_ID_DAYS[day.weekday()]}, {day.day} {_ID_MONTHS[day.month - 1]} {day.year}"
    return f"{_EN_DAYS[day.weekday()]}, {day.day} {_EN_MONTHS[day.month - 1]} {day.year}"


def local_time(moment: datetime, timezone: str) -> str:
    """`10 Mar 09:00 (Asia/Jakarta)`: a moment as the channel's clock shows it."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local.day} {_EN_MONTHS[local.month - 1][:3]} {local:%H:%M} ({timezone})"
