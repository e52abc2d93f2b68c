"""Local-time arithmetic for digest schedules: parsing HH:MM and zones, due checks, next runs."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ringkas.digest.models import Subscription

_TIME = re.compile(r"^([01]?\d|2[0-3])[:.]([0-5]\d)$")
# Indonesian time-zone abbreviations people type instead of the IANA name.
_ALIASES = {
    "wib": "Asia/Jakarta", "wita": "Asia/Makassar", "wit": "Asia/Jayapura", "utc": "UTC", "gmt": "UTC",
}


def parse_time(text: str) -> str | None:
    """"8:00", "08:00" or "08.00" -> "08:00"; anything else -> None."""
    match = _TIME.match(text.strip())
    if not match:
        return None
    return f"{int(match.group(1)):02d}:{match.group(2)}"


# Names the zone database may list that are no place's time: the host's own setting and a placeholder.
_NOT_PLACES = frozenset({"localtime", "factory"})


@cache
def _zones_by_folded_name() -> dict[str, str]:
    return {name.casefold(): name for name in available_timezones() if name.casefold() not in _NOT_PLACES}


def parse_timezone(text: str) -> str | None:
    """An IANA zone name (any letter case) or WIB/WITA/WIT -> the canonical IANA name; else None."""
    raw = text.strip()
    if not raw or len(raw) > 64:
        return None
    if raw.casefold() in _ALIASES:
        return _ALIASES[raw.casefold()]
    name = _zones_by_folded_name().get(raw.casefold())
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def local_date(now: datetime, timezone: str) -> date:
    return now.astimezone(ZoneInfo(timezone)).date()


def scheduled_at(day: date, hhmm: str, timezone: str) -> datetime:
    """The moment `hhmm` happens on `day` in `timezone` (a time skipped by DST moves forward)."""
    hour, minute = (int(part) for part in hhmm.split(":"))
    zone = ZoneInfo(timezone)
    moment = datetime.combine(day, time(hour, minute), tzinfo=zone)
    # round-trip through UTC resolves nonexistent local times (spring-forward gap)
    return moment.astimezone(ZoneInfo("UTC")).astimezone(zone)


def due_today(subscription: Subscription, now: datetime, *, grace: timedelta | None = None) -> bool:
    """Today's (local) digest time has passed and the schedule existed then; with `grace`, by at most that."""
    today = local_date(now, subscription.timezone)
    at = scheduled_at(today, subscription.time, subscription.timezone)
    if now < at or (subscription.since is not None and subscription.since > at):
        return False
    return grace is None or now - at <= grace


def next_run(subscription: Subscription, now: datetime, *, posted_today: bool = False) -> datetime:
    """The next time this channel's digest goes out."""
    today = local_date(now, subscription.timezone)
    at = scheduled_at(today, subscription.time, subscription.timezone)
    if at > now and not posted_today:
        return at
    return scheduled_at(today + timedelta(days=1), subscription.time, subscription.timezone)
