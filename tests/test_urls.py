"""URL canonicalisation, link recognition, site identity and language codes."""

from __future__ import annotations

import pytest

from ringkas.language import detect_language, language_name, normalize_language
from ringkas.urls import TRACKING_PARAMS, canonicalize, is_http_url, registrable_domain, same_site


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTPS://Example.COM", "https://example.com/"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com/a#section-2", "https://example.com/a"),
        ("https://example.com/a?utm_source=x&utm_medium=y&id=7", "https://example.com/a?id=7"),
        ("https://example.com/a?fbclid=abc&gclid=def&msclkid=1&mc_cid=2&mc_eid=3", "https://example.com/a"),
        ("https://example.com/a?igshid=1&yclid=2&_hsenc=3&_hsmi=4&ref_src=twsrc&dclid=5", "https://example.com/a"),
        ("https://example.com/a?UTM_Campaign=spring&b=2&a=1", "https://example.com/a?a=1&b=2"),
        ("https://example.com/search?q=a+b&page=2", "https://example.com/search?page=2&q=a+b"),
        ("https://example.com/a?tag=x&tag=y&tag=a", "https://example.com/a?tag=x&tag=y&tag=a"),
        ("https://example.com/a?", "https://example.com/a"),
        ("https://user:pw@example.com/a", "https://example.com/a"),
        ("https://bücher.example/straße", "https://xn--bcher-kva.example/stra%C3%9Fe"),
        ("https://example.com/stra%c3%9fe?q=caf%c3%a9", "https://example.com/stra%C3%9Fe?q=caf%C3%A9"),
        ("https://example.com/a b", "https://example.com/a%20b"),
        ("https://EXAMPLE.com./a", "https://example.com/a"),
        ("http://[2001:DB8::1]:80/x", "http://[2001:db8::1]/x"),
        ("  https://example.com/a  ", "https://example.com/a"),
        ("https://example.com/a/", "https://example.com/a/"),
        ("mailto:someone@example.com", "mailto:someone@example.com"),
    ],
)
def test_canonicalize(raw: str, expected: str) -> None:
    assert canonicalize(raw) == expected


def test_canonicalize_is_idempotent_and_keeps_meaningful_params() -> None:
    once = canonicalize("https://News.example/story?id=42&utm_source=slack&page=3#top")
    assert once == "https://news.example/story?id=42&page=3"
    assert canonicalize(once) == once
    assert "utm_source" not in TRACKING_PARAMS  # handled by prefix, not listed one by one
    assert {"fbclid", "gclid", "mc_eid", "igshid"} <= TRACKING_PARAMS


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("https://example.com", True),
        ("http://example.com/a?b=c", True),
        ("HTTPS://EXAMPLE.COM/", True),
        ("https://127.0.0.1:8080/x", True),
        ("ftp://example.com/file", False),
        ("javascript:alert(1)", False),
        ("example.com", False),
        ("https://", False),
        ("https://exa mple.com", False),
        ("https://example.com:99999/", False),
        ("", False),
        ("not a url", False),
    ],
)
def test_is_http_url(text: str, ok: bool) -> None:
    assert is_http_url(text) is ok


def test_site_identity() -> None:
    assert registrable_domain("news.bbc.co.uk") == "bbc.co.uk"
    assert registrable_domain("www.detik.com") == "detik.com"
    assert same_site("https://www.kompas.com/a", "https://tekno.kompas.com/b")
    assert not same_site("https://kompas.com/a", "https://kompas.com.evil.example/b")
    assert not same_site("https://a.github.io/x", "https://b.github.io/y")  # public suffix
    assert same_site("http://127.0.0.1:8000/a", "http://127.0.0.1:9000/b")
    assert not same_site("http://127.0.0.1/a", "http://127.0.0.2/b")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("id-ID", "id"),
        ("in", "id"),
        ("EN", "en"),
        ("en_US", "en"),
        ("zh-Hant-TW", "zh"),
        ("iw", "he"),
        ("ind", "id"),
        ("jpn", "ja"),
        ("und", None),
        ("", None),
        (None, None),
        ("x-default", None),
        ("12", None),
    ],
)
def test_normalize_language(code: str | None, expected: str | None) -> None:
    assert normalize_language(code) == expected


def test_language_names() -> None:
    assert language_name("id") == "Indonesian"
    assert language_name("en") == "English"
    assert language_name("ja") == "Japanese"
    assert language_name("pt-BR") == "Portuguese"
    assert language_name("jv") == "Javanese"
    assert language_name("qq") == "qq"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Pemerintah Indonesia mengumumkan bahwa sekolah akan dibuka kembali minggu depan karena situasi "
         "membaik dan vaksinasi sudah mencapai target.", "id"),
        ("The government announced that schools will reopen next week because the situation has improved.",
         "en"),
        ("Die Regierung kündigte an, dass die Schulen nächste Woche wieder öffnen, weil sich die Lage "
         "verbessert hat.", "de"),
        ("政府は、状況が改善したため、来週から学校を再開すると発表した。", "ja"),
        ("Le gouvernement a annoncé que les écoles rouvriront la semaine prochaine.", "fr"),
    ],
)
def test_detect_language(text: str, code: str) -> None:
    assert detect_language(text) == code


def test_detect_language_abstains_on_thin_text() -> None:
    assert detect_language("") is None
    assert detect_language("12345 !!!") is None
    assert detect_language("ok") is None
