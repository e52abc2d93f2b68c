"""URL helpers: recognising web links, canonical forms for caching and de-duplication, site identity."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, quote, unquote_plus, urlsplit, urlunsplit

import idna
from tld import get_fld

#: Query parameters that only identify a click or a campaign, never the document.
TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "mc_cid", "mc_eid",
        "igshid", "igsh", "yclid", "_hsenc", "_hsmi", "__hssc", "__hstc", "__hsfp", "hsctatracking",
        "ref_src", "ref_url", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id", "vero_conv", "_ga",
        "_gl", "s_cid", "srsltid", "twclid", "ttclid", "li_fat_id", "epik", "rb_clickid", "wickedid",
        "cmpid", "ncid", "xtor", "ito", "at_medium", "at_campaign", "at_custom1", "at_custom2",
        "sr_share", "__twitter_impression", "trk", "trkcampaign", "spm", "guccounter",
        "guce_referrer", "guce_referrer_sig", "ocid", "cvid", "smid", "fb_action_ids",
        "fb_action_types", "fb_source", "fb_ref", "action_object_map", "action_type_map",
        "action_ref_map", "cmp", "amp_js_v", "usqp", "_openstat",
    }
)
#: Parameter-name prefixes used only by analytics (utm_source, pk_campaign, mtm_kwd, hsa_acc, ...).
TRACKING_PREFIXES: tuple[str, ...] = ("utm_", "pk_", "mtm_", "hsa_", "matomo_", "piwik_", "stm_", "ga_")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
_WHITESPACE = re.compile(r"\s")


def is_tracking_param(name: str) -> bool:
    key = name.lower()
    return key in TRACKING_PARAMS or key.startswith(TRACKING_PREFIXES)


def is_http_url(text: str) -> bool:
    """True when `text` is a single absolute http(s) URL with a host (no spaces, no credentials check)."""
    if not text or len(text) > 8192 or _WHITESPACE.search(text):
        return False
    try:
        split = urlsplit(text)
        host = split.hostname
        _ = split.port  # raises ValueError on a bad port
    except ValueError:
        return False
    return split.scheme.lower() in _DEFAULT_PORTS and bool(host)


def ascii_host(host: str) -> str:
    """Lower-case host; an internationalised name becomes its punycode (A-label) form."""
    host = host.strip().rstrip(".").lower()
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        try:
            return host.encode("idna").decode("ascii")
        except UnicodeError:
            return host


def _netloc(split: SplitResult, scheme: str) -> str:
    host = split.hostname or ""
    if ":" in host:  # IPv6 literal
        shown = f"[{ipaddress.ip_address(host).compressed}]" if _is_ip(host) else f"[{host}]"
    else:
        shown = ascii_host(host)
    try:
        port = split.port
    except ValueError:
        port = None
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        shown = f"{shown}:{port}"
    return shown


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _percent_encode(part: str, safe: str) -> str:
    """Percent-encode non-ASCII and unsafe characters (as browsers do); existing escapes in upper case."""
    return _ESCAPE.sub(lambda m: m.group(0).upper(), quote(part, safe=safe))


def _tidy_query(query: str) -> str:
    """Drop tracking parameters and sort the rest by name, keeping each pair's original encoding."""
    if not query:
        return ""
    kept: list[tuple[str, int, str]] = []
    for position, pair in enumerate(query.split("&")):
        if not pair:
            continue
        name = unquote_plus(pair.split("=", 1)[0])
        if is_tracking_param(name):
            continue
        kept.append((name, position, _percent_encode(pair, _QUERY_SAFE)))
    kept.sort(key=lambda item: (item[0], item[1]))  # stable for repeated names
    return "&".join(pair for _, _, pair in kept)


def canonicalize(url: str) -> str:
    """The canonical form of an http(s) URL, used as the cache key and shown to people.

    Lower-case scheme and host, IDN host as punycode, default port dropped, credentials and fragment
    dropped, tracking parameters removed, remaining parameters sorted, empty path becomes "/".
    Anything that is not an http(s) URL is returned stripped but otherwise unchanged.
    """
    url = url.strip()
    try:
        split = urlsplit(url)
        scheme = split.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not split.hostname:
            return url
        netloc = _netloc(split, scheme)
    except ValueError:
        return url
    path = _percent_encode(split.path, _PATH_SAFE) or "/"
    return urlunsplit((scheme, netloc, path, _tidy_query(split.query), ""))


def without_query(url: str) -> str:
    """The URL up to its path, as written: no query, no fragment (scheme, host and path kept as they are)."""
    return url.split("#", 1)[0].split("?", 1)[0]


def host_of(url: str) -> str | None:
    """The URL's host in ASCII lower case, or None."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return ascii_host(host) if host else None


def registrable_domain(host: str) -> str:
    """The registrable part of a host (news.bbc.co.uk -> bbc.co.uk), using the Public Suffix List.

    IP literals and names on unknown suffixes fall back to the host itself, or its last two labels.
    """
    host = ascii_host(host)
    if _is_ip(host):
        return host
    found = get_fld(host, fix_protocol=True, fail_silently=True)
    if isinstance(found, str) and found:
        return found.lower()
    labels = host.split(".")
    return ".".join(labels[-2:]) if len(labels) >= 2 else host


def same_site(a: str, b: str) -> bool:
    """True when two http(s) URLs belong to the same registrable site."""
    host_a, host_b = host_of(a), host_of(b)
    if not host_a or not host_b:
        return False
    return registrable_domain(host_a) == registrable_domain(host_b)


# Host labels that only name another rendering of the same site (AMP, mobile, "www").
_VARIANT_HOST_PREFIXES = ("www.", "m.", "mobile.", "amp.")
_AMP_SUFFIX = re.compile(r"\.amp(?=\.html?$|$)", re.IGNORECASE)


def _site_host(host: str) -> str:
    host = ascii_host(host)
    for prefix in _VARIANT_HOST_PREFIXES:
        rest = host.removeprefix(prefix)
        if rest != host and "." in rest:
            return rest
    return host


def _document_path(path: str) -> str:
    """The path without AMP markers (an `amp` segment, a `.amp` suffix) and without a trailing slash."""
    segments = [segment for segment in path.split("/") if segment and segment.lower() != "amp"]
    return _AMP_SUFFIX.sub("", "/" + "/".join(segments))


def same_path(a: str, b: str) -> bool:
    """True when two URLs differ at most in their query (and scheme, www./m. prefix, trailing slash):
    the only difference that lets two links share one article by their text (see service)."""
    x, y = urlsplit(canonicalize(a)), urlsplit(canonicalize(b))
    if not x.hostname or not y.hostname or _site_host(x.hostname) != _site_host(y.hostname):
        return False
    return x.port == y.port and _document_path(x.path) == _document_path(y.path)


def same_document(claim: str, url: str) -> bool:
    """True when `claim` (a page's rel=canonical or og:url) names the same document as `url`.

    Allowed differences are only those between renderings of one page: scheme, a www./m./amp. host
    prefix, AMP markers in the path, a trailing slash, tracking and other parameters the claim leaves
    out. A page may not name a different path on its own host: on shared hosts (medium.com/@name,
    blog platforms) that path belongs to someone else, and the claim would let one page answer, from
    the summary cache, for another author's link.
    """
    a, b = urlsplit(canonicalize(claim)), urlsplit(canonicalize(url))
    if not a.hostname or not b.hostname or _site_host(a.hostname) != _site_host(b.hostname):
        return False
    if a.port != b.port and {a.port, b.port} - {None, 80, 443}:
        return False
    if _document_path(a.path) != _document_path(b.path):
        return False
    claimed = [pair for pair in a.query.split("&") if pair]
    present = [pair for pair in b.query.split("&") if pair]
    return all(claimed.count(pair) <= present.count(pair) for pair in set(claimed))


_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:api[-_]?key|apikey|access[-_]?token|auth|token|key|secret|password|passwd|pwd|sig|"
    r"signature|private[-_]?token|client[-_]?secret)=)[^&;#\s]*"
)


def without_credentials(url: str) -> str:
    """`url` fit to print: no `user:password@` and no token-like query values (`?token=***`).
    Works on malformed text too: everything before the authority's last `@` goes."""
    scheme, sep, rest = url.partition("://")
    if sep:
        head = re.split(r"[/?#]", rest, maxsplit=1)[0]
        if "@" in head:
            rest = rest[head.rfind("@") + 1 :]
        elif "@" in rest and ":" in head and head[0] != "[" and not head.rpartition(":")[2].isdigit():
            rest = rest[rest.index("@", len(head)) + 1 :]  # `user:pa/ss@host`: a port would be digits
        url = f"{scheme}{sep}{rest}"
    return _SECRET_QUERY.sub(r"\1***", url)
