"""Which addresses a fetch may never reach: one table of every IANA special-purpose range."""

from ringkas.ssrf.special_purpose import DENIED_TABLE, SPECIAL_PURPOSE, Range

__all__ = ["DENIED_TABLE", "SPECIAL_PURPOSE", "Range"]
