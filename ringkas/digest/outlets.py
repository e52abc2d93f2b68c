"""Who published a feed (its site's name, not the feed's raw title) and clean story links.

Feed titles are often about the feed ("newest submissions : homelab", "Stories by Ana on Medium",
"Blog – Example AI", "TechCrunch » AI"). The label keeps the part that names the site: the part matching
the site's domain, else the first part that is not feed boilerplate, else the host name.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from ringkas.urls import canonicalize, host_of, registrable_domain

MAX_LABEL = 60
_SEPARATORS = re.compile(r"\s+[-|:–—»·•/]\s+|\s*[|»·•]\s*|\s*:\s+")
_BY_WHOM = re.compile(
    r"^(?:(?:latest|newest|recent|all)\s+)?(?:stories|posts|articles|entries|updates|news)\s+(?:by|from)\s+"
    r"(?P<who>.+?)(?:\s+on\s+(?P<site>.+))?$",
    re.IGNORECASE,
)
_BOILERPLATE = re.compile(
    r"^(?:(?:the\s+)?(?:latest|newest|new|recent|top|hot|all|best|rising)\s*)*"
    r"(?:submissions|posts|stories|articles|entries|items|news|updates|headlines|blog|blog posts|feed|rss|"
    r"rss feed|atom feed|comments|home|homepage|front ?page|everything|berita|terbaru|artikel|kabar)?"
    r"(?:\s+(?:feed|rss|atom))?$",
    re.IGNORECASE,
)
_PLATFORM_PREFIX = {"reddit.com": "r/"}

# Story links: parameters that only say the click came from a feed. `ringkas.urls` strips the general
# tracking parameters (utm_*, fbclid, ...) in `canonicalize`; these are the feed-specific ones.
_FEED_ONLY_PARAMS = frozenset({"mwrsm", "rss", "rss_id", "rssid", "from_rss", "feed_id", "feedid"})
_VALUE_SAYS_FEED = re.compile(r"^(?:rss|atom|feed|newsfeed|syndication)(?:\b|[-_.]|$)", re.IGNORECASE)
_FEED_VALUE_PARAMS = frozenset(
    {"source", "src", "ref", "from", "via", "cmp", "feature", "medium", "origin", "channel", "trk", "s"}
)


def _fold(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.casefold())


def site_label(feed_title: str | None, *, feed_url: str, site_url: str | None = None) -> str:
    """A short name for the outlet behind a feed."""
    host = host_of(site_url or "") or host_of(feed_url) or feed_url
    domain = registrable_domain(host) if "." in host else host
    brand = _fold(domain.split(".")[0])
    title = re.sub(r"\s+", " ", feed_title or "").strip()
    prefix = _PLATFORM_PREFIX.get(domain, "")
    if title:
        whom = _BY_WHOM.match(title)
        if whom:
            who, site = whom.group("who").strip(), (whom.group("site") or "").strip()
            return (f"{who} ({site})" if site else who)[:MAX_LABEL]
        parts = [part.strip() for part in _SEPARATORS.split(title) if part and part.strip()]
        named = [part for part in parts if not _BOILERPLATE.match(part)]
        for part in named:  # the part that is the site's own name
            folded = _fold(part)
            if brand and folded and (folded == brand or (len(brand) >= 4 and brand in folded)
                                     or (len(folded) >= 4 and folded in brand)):
                return part[:MAX_LABEL]
        if named:
            label = named[0]
            return (label if label.startswith(prefix) else f"{prefix}{label}")[:MAX_LABEL]
    return host.removeprefix("www.")[:MAX_LABEL]


def story_link(url: str) -> str:
    """`url` without feed-click parameters (`?source=rss-…`, `mwrsm`, …), its fragment kept."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.query:
        return url
    kept = []
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        key = name.casefold()
        if key in _FEED_ONLY_PARAMS or (key in _FEED_VALUE_PARAMS and _VALUE_SAYS_FEED.match(value)):
            continue
        kept.append(pair)
    return urlunsplit(parts._replace(query="&".join(kept)))


def item_key(url: str, *, keep_fragment: bool) -> str:
    """The canonical link of a feed item (general and feed tracking removed); with `keep_fragment`, the
    `#anchor` stays part of it (a feed may link each post as `page#anchor`)."""
    link = story_link(url)
    canonical = canonicalize(link)
    if keep_fragment:
        fragment = urlsplit(link).fragment
        if fragment:
            return f"{canonical}#{fragment}"
    return canonical
